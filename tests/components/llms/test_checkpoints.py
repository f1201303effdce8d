"""Hugging Face format: exact save/reload, other LLaVA layouts, composed LMs, and bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from esgkit.components.llms.llava import LlavaLlamaDecoder
from esgkit.core.errors import CheckpointError, CompatibilityError

CAPTION = "Three green triangles left of a ring on the sand."
PHRASES = ("three green triangles", "ring", "sand")
VISION_DIM = 32


def tiny(**overrides) -> LlavaLlamaDecoder:
    """A tiny decoder with LLaVA-1.5's two-layer projector (the layout of the published folders)."""
    return LlavaLlamaDecoder(LlavaLlamaDecoder.Config(**{"projector": "mlp", **overrides}))


def _outputs(decoder: LlavaLlamaDecoder, z_v: torch.Tensor):
    batch = decoder.collate([decoder.build_inputs("grounding", CAPTION, PHRASES, z_v.shape[1])])
    with torch.no_grad():
        return decoder(z_v, **batch)


@pytest.mark.parametrize("projector", ["mlp", "linear"])
def test_save_and_reload_round_trip_exactly(tmp_path, projector):
    torch.manual_seed(1)
    decoder = tiny(vision_dim=VISION_DIM, projector=projector, seed=3)
    with torch.no_grad():  # move the weights away from any initialisation a reload could repeat
        for p in decoder.parameters():
            p.add_(torch.randn_like(p))
    decoder.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    again = LlavaLlamaDecoder.from_pretrained(tmp_path)
    assert again.config.projector == projector and again.vision_dim == VISION_DIM
    a, b = decoder.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.tokenizer.get_vocab() == decoder.tokenizer.get_vocab()
    assert (again.seg_token_id, again.image_token_id) == (decoder.seg_token_id, decoder.image_token_id)
    z_v = torch.randn(1, 5, VISION_DIM)
    x, y = _outputs(decoder, z_v), _outputs(again, z_v)
    assert torch.equal(x.logits, y.logits) and torch.equal(x.seg_embeddings[0], y.seg_embeddings[0])


def test_transformers_reads_the_saved_directory_as_llava(tmp_path):
    from transformers import LlavaForConditionalGeneration

    decoder = tiny(vision_dim=VISION_DIM)
    decoder.save_pretrained(tmp_path)
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(llava.model.multi_modal_projector.linear_2.weight, decoder.projector.linear_2.weight)
    assert torch.equal(llava.model.language_model.layers[1].mlp.up_proj.weight, decoder.lm.model.layers[1].mlp.up_proj.weight)
    assert llava.config.image_token_index == decoder.image_token_id


def test_legacy_llava_layout_loads_and_keeps_the_vision_tower(tmp_path):
    decoder = tiny(vision_dim=VISION_DIM)
    decoder.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    legacy = {}
    for key, value in state.items():  # the llava-hf layout of transformers < 4.52
        key = key.replace("model.language_model.", "language_model.model.")
        key = key.replace("model.multi_modal_projector.", "multi_modal_projector.")
        legacy["language_model.lm_head.weight" if key == "lm_head.weight" else key] = value
    legacy["vision_tower.vision_model.post_layernorm.weight"] = torch.ones(VISION_DIM)
    save_file(legacy, tmp_path / "model.safetensors")
    again = LlavaLlamaDecoder.from_pretrained(tmp_path)
    assert torch.equal(again.lm.lm_head.weight, decoder.lm.lm_head.weight)
    assert list(again.vision_tower_state) == ["vision_model.post_layernorm.weight"]
    again.save_pretrained(tmp_path / "resaved")
    assert "model.vision_tower.vision_model.post_layernorm.weight" in load_file(tmp_path / "resaved" / "model.safetensors")


def _edit(tmp_path, edit) -> None:
    state = load_file(tmp_path / "model.safetensors")
    edit(state)
    save_file(state, tmp_path / "model.safetensors")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)

    def edit(state):
        del state["model.language_model.layers.1.self_attn.q_proj.weight"]
        state["model.language_model.layers.7.extra.weight"] = torch.zeros(2)
        state["adapter.weight"] = torch.zeros(2)

    _edit(tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        LlavaLlamaDecoder.from_pretrained(tmp_path)
    message = str(info.value)
    assert "missing keys: model.layers.1.self_attn.q_proj.weight;" in message
    unexpected = message.split("unexpected keys: ")[1].split(";")[0]
    assert "adapter.weight" in unexpected and "model.layers.7.extra.weight" in unexpected


def test_missing_projector_key_is_named(tmp_path):
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)
    _edit(tmp_path, lambda s: s.pop("model.multi_modal_projector.linear_2.bias"))
    with pytest.raises(CheckpointError, match=r"\(projector\) does not fit \(missing keys: linear_2\.bias\)"):
        LlavaLlamaDecoder.from_pretrained(tmp_path)


def test_wrong_shape_is_a_checkpoint_error(tmp_path):
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)
    _edit(tmp_path, lambda s: s.update({"model.language_model.norm.weight": torch.ones(3)}))
    with pytest.raises(CheckpointError, match="norm.weight"):
        LlavaLlamaDecoder.from_pretrained(tmp_path)


def test_directory_without_weights_or_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        LlavaLlamaDecoder.from_pretrained(tmp_path)
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        LlavaLlamaDecoder.from_pretrained(tmp_path)


def test_loaded_projector_must_fit_the_vision_encoder(tmp_path):
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)
    again = LlavaLlamaDecoder.from_pretrained(tmp_path)
    again.configure(VISION_DIM)  # the same width: fine
    with pytest.raises(CompatibilityError, match="32-d.*48-d"):
        again.configure(48)


def test_compose_any_llama_family_lm_directory_with_a_new_projector(tmp_path):
    """hf_dir holding a plain causal LM (no projector): the tokenizer gets <SEG>, W is new."""
    from transformers import LlamaConfig, LlamaForCausalLM

    donor = tiny()
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=835, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                      num_attention_heads=4, tie_word_embeddings=True))
    lm.save_pretrained(tmp_path)
    from esgkit.components.llms.tokenizer import load_tiny_tokenizer

    raw = load_tiny_tokenizer()
    raw.save_pretrained(tmp_path)
    decoder = tiny(source="hf_dir", path=str(tmp_path), vision_dim=16)
    assert decoder.embed_dim == 48 and decoder.seg_token_id == donor.seg_token_id
    assert decoder.lm.get_input_embeddings().weight.shape[0] == len(decoder.tokenizer)
    assert torch.equal(decoder.lm.model.layers[0].mlp.down_proj.weight, lm.model.layers[0].mlp.down_proj.weight)
    out = _outputs(decoder, torch.randn(1, 4, 16))
    assert out.seg_embeddings[0].shape == (3, 48)


def test_lm_directory_with_a_missing_key(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=835, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(tmp_path)
    tiny().tokenizer.save_pretrained(tmp_path)
    _edit(tmp_path, lambda s: s.pop("model.layers.0.mlp.gate_proj.weight"))
    with pytest.raises(CheckpointError, match="model.layers.0.mlp.gate_proj.weight"):
        tiny(source="hf_dir", path=str(tmp_path))


def test_projector_file_alone(tmp_path):
    trained = tiny(vision_dim=VISION_DIM, seed=5)
    save_file({f"multi_modal_projector.{k}": v for k, v in trained.projector.state_dict().items()}, tmp_path / "p.safetensors")
    decoder = tiny(projector_path=str(tmp_path / "p.safetensors"))
    assert decoder.vision_dim == VISION_DIM
    assert torch.equal(decoder.projector.linear_1.weight, trained.projector.linear_1.weight)


def test_saved_config_is_a_llava_config(tmp_path):
    tiny(vision_dim=VISION_DIM).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "llava" and config["text_config"]["hidden_size"] == 64
    assert config["vision_config"]["hidden_size"] == VISION_DIM and config["esgkit_projector"] == "mlp"
