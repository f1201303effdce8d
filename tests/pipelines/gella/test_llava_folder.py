"""A LLaVA-1.5 folder in the llava-hf layout (saved here by transformers: a tokenizer with ``<image>``
and no ``<SEG>``) as GELLA's vision tower and language decoder, end to end: ``<SEG>`` is added and the
embeddings grow by one row, the projector is the folder's, a grounding runs, and the training path reads
E_vl at each ``<SEG>`` of the folder's LM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.components.llms.tokenizer import IMAGE_TOKEN, SEG_TOKEN, build_tiny_tokenizer_file
from esgkit.core import EntityMasks
from esgkit.core.config import load_config
from esgkit.core.pipeline import build_pipeline
from llava_folders import save_tiny_llava


@pytest.fixture(scope="module")
def llava_hf(tmp_path_factory):
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_tiny_tokenizer_file(), bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    assert SEG_TOKEN not in tokenizer.get_vocab()  # as llava-hf ships it
    path = tmp_path_factory.mktemp("llava-1.5-tiny-hf")
    return path, save_tiny_llava(path, tokenizer, vision_layers=2), len(tokenizer)


def test_a_llava_hf_folder_runs_gella_end_to_end(llava_hf):
    path, llava, vocabulary = llava_hf
    config = load_config("gella_tiny", [f"vision_encoder={{name: llava_clip, path: {path}}}",
                                        "language_decoder.source=hf_dir", f"language_decoder.path={path}",
                                        "language_decoder.projector=mlp"])
    pipeline = build_pipeline(config)
    decoder = pipeline.language_decoder
    assert len(decoder.tokenizer) == vocabulary + 1  # <SEG> added
    assert decoder.lm.get_input_embeddings().weight.shape[0] == vocabulary + 1  # and its embedding row
    theirs = llava.model.multi_modal_projector.state_dict()
    for key, value in decoder.projector.state_dict().items():  # the folder's projector, kept
        torch.testing.assert_close(value, theirs[key])

    image = np.zeros((64, 64, 3), np.uint8)
    image[:32] = (90, 160, 230)
    image[32:] = (60, 170, 60)
    masks = np.zeros((2, 64, 64), bool)
    masks[0, :32], masks[1, 32:] = True, True
    caption = "the sky above the grass"
    with pytest.warns(UserWarning):  # a random LM names no phrase: the run completes and says so
        result = pipeline.run(image, masks=EntityMasks(masks), caption=caption)
    assert len(result.masks) == 2

    # the training path reads E_vl at each <SEG> of the folder's LM, and <SEG>'s new row learns
    z_v = pipeline.vision_encoder(pipeline.vision_encoder.preprocess(image)[None])
    batch = decoder.collate([decoder.build_inputs("nouns", caption, ["the sky", "the grass"], z_v.shape[1])])
    out = decoder(z_v, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert out.seg_embeddings[0].shape == (2, llava.config.text_config.hidden_size)
    out.loss.backward()
    seg_row = decoder.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
    assert seg_row == vocabulary and decoder.lm.get_input_embeddings().weight.grad[seg_row].abs().sum() > 0
