"""source: gguf on a tiny LLaMA GGUF file written here (float32, so weights must come back exactly),
and the dequantised HF-format cache (``gguf_cache``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esgkit.components.llms.llava import LlavaLlamaDecoder, sources
from esgkit.components.llms.tokenizer import TINY_TOKENIZER_DIR, load_tiny_tokenizer

gguf = pytest.importorskip("gguf", reason="writing and reading GGUF needs the 'gguf' package (extra 'smollm')")

TEXT = "A red circle is left of two blue squares under the sky."


def write_llama_gguf(path, lm, tokenizer_json: str) -> None:
    """A llama.cpp-style GGUF of a transformers LlamaForCausalLM and a byte-level BPE tokenizer."""
    cfg = lm.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    bpe = json.loads(tokenizer_json)["model"]
    vocab = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types([3 if t in ("<pad>", "<s>", "</s>") else 1 for t in vocab])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for key, tensor in lm.state_dict().items():
        array = tensor.detach().float().numpy()
        if key.endswith(("q_proj.weight", "k_proj.weight")):  # llama.cpp's rotary layout of q and k
            heads = cfg.num_attention_heads if "q_proj" in key else cfg.num_key_value_heads
            array = array.reshape(heads, 2, array.shape[0] // heads // 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)
        writer.add_tensor(names.get_name(key, try_suffixes=(".weight", ".bias")), np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=835, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    write_llama_gguf(path, lm, (TINY_TOKENIZER_DIR / "tokenizer.json").read_text())
    return path, lm


def _assert_same_lm(decoder: LlavaLlamaDecoder, lm) -> None:
    ours = decoder.lm.state_dict()
    for key, value in lm.state_dict().items():  # embedding tables grew by <image>, <SEG>
        assert torch.equal(ours[key][: value.shape[0]], value), key


def test_any_llama_gguf_loads_into_the_decoder(gguf_file):
    path, lm = gguf_file
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="gguf", path=str(path), vision_dim=8))
    _assert_same_lm(decoder, lm)
    reference = load_tiny_tokenizer()
    assert decoder.tokenizer.encode(TEXT, add_special_tokens=False) == reference.encode(TEXT, add_special_tokens=False)
    assert decoder.tokenizer.encode("sky <SEG>", add_special_tokens=False)[-1] == decoder.seg_token_id
    batch = decoder.collate([decoder.build_inputs("grounding", TEXT, ["red circle", "sky"], 3)])
    assert decoder(torch.randn(1, 3, 8), **batch).seg_embeddings[0].shape == (2, 64)


def test_gguf_cache_converts_once_and_reloads_the_same(gguf_file, tmp_path, monkeypatch):
    path, lm = gguf_file
    reads = []
    original = sources.load_causal_lm_dir
    monkeypatch.setattr(sources, "load_causal_lm_dir", lambda d, dtype: reads.append(d) or original(d, dtype))
    config = LlavaLlamaDecoder.Config(source="gguf", path=str(path), gguf_cache=str(tmp_path))
    first = LlavaLlamaDecoder(config)
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("tiny-llama.F32-") and (cached / "model.safetensors").is_file()
    assert reads == []
    again = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(**vars(config)))
    assert reads == [cached]  # the second load read the HF copy, not the GGUF
    _assert_same_lm(again, lm)
    a, b = first.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.tokenizer.get_vocab() == first.tokenizer.get_vocab()
