"""A LLaVA directory split between the llava_clip vision encoder and the llava_llama decoder
reproduces transformers' LlavaForConditionalGeneration exactly, with the tower run once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.components.encoders.vision.llava_clip import LlavaClipVisionEncoder
from esgkit.components.llms.llava import LlavaLlamaDecoder
from esgkit.components.llms.tokenizer import load_tiny_tokenizer
from esgkit.core import VisionEncoder, get_registry
from esgkit.core.errors import CheckpointError
from llava_folders import save_tiny_llava


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llava")
    return path, save_tiny_llava(path, load_tiny_tokenizer())


def test_registry_builds_the_tiny_tower():
    encoder = get_registry().build("vision_encoder", {"name": "llava_clip"})
    assert isinstance(encoder, VisionEncoder)
    pixels = encoder.preprocess(np.zeros((30, 50, 3), np.uint8))
    assert pixels.shape == (3, 64, 64)
    z_v = encoder(pixels[None])
    assert z_v.shape == (1, 16, 64) and encoder.grid_size == (4, 4) and encoder.embed_dim == 64
    z_v.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_tower_plus_decoder_equals_transformers_llava(llava_dir):
    path, llava = llava_dir
    encoder = LlavaClipVisionEncoder(LlavaClipVisionEncoder.Config(path=str(path))).eval()
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="hf_dir", path=str(path))).eval()
    decoder.configure(encoder.embed_dim)
    assert encoder.config.feature_layer == -2 and encoder.grid_size == (4, 4)
    assert len(decoder.vision_tower_state) == len(encoder.tower.state_dict())
    pixels = encoder.preprocess(np.random.default_rng(0).integers(0, 255, (40, 24, 3), dtype=np.uint8))[None]
    with torch.no_grad():
        z_v = encoder(pixels)
        ids = torch.tensor([decoder.prompt_ids("nouns", "Two rings on the grass.", z_v.shape[1])])
        ours = decoder(z_v, ids).logits
        theirs = llava(input_ids=ids, pixel_values=pixels).logits
        features = llava.model.get_image_features(pixel_values=pixels).pooler_output[0]
    torch.testing.assert_close(decoder.projector(z_v)[0], features)
    torch.testing.assert_close(ours, theirs)


def test_a_directory_without_a_tower(tmp_path):
    LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=16)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no vision tower weights"):
        LlavaClipVisionEncoder(LlavaClipVisionEncoder.Config(path=str(tmp_path)))


@pytest.mark.parametrize("layout", ["sharded", "bin"])
def test_sharded_and_pickled_llava_directories_load(llava_dir, tmp_path, layout):
    _, llava = llava_dir
    if layout == "sharded":
        llava.save_pretrained(tmp_path, max_shard_size="100KB")
        assert (tmp_path / "model.safetensors.index.json").is_file()
    else:
        llava.config.save_pretrained(tmp_path)
        torch.save(llava.state_dict(), tmp_path / "pytorch_model.bin")
    load_tiny_tokenizer().save_pretrained(tmp_path)
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="hf_dir", path=str(tmp_path)))
    encoder = LlavaClipVisionEncoder(LlavaClipVisionEncoder.Config(path=str(tmp_path)))
    ours, theirs = decoder.lm.model.layers[1].self_attn.o_proj, llava.model.language_model.layers[1].self_attn.o_proj
    assert torch.equal(ours.weight, theirs.weight)
    assert torch.equal(decoder.projector.linear_1.bias, llava.model.multi_modal_projector.linear_1.bias)
    def patch_weight(module):
        return next(v for k, v in module.state_dict().items() if k.endswith("patch_embedding.weight"))

    assert torch.equal(patch_weight(encoder.tower), patch_weight(llava.model.vision_tower))
