"""A tiny LSTM text encoder trained from scratch — the stand-in for the GloVe + LSTM language side of
CMPC and the earlier referring segmenters: hashed word embeddings (no vocabulary file; see
``hashed``) → a one-layer LSTM; the sentence vector is the state after the last word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from esgkit.core import TextEncoder, TextFeatures
from esgkit.core.errors import ConfigError

from .hashed import hashed_batch


class LSTMTextEncoder(nn.Module, TextEncoder):
    """Hashed word embeddings → LSTM; tokens = the per-word hidden states, sentence = the last one."""

    @dataclass
    class Config:
        embed_dim: int = 64     # word embedding width (the paper: GloVe 300)
        dim: int = 64           # LSTM width (the paper: 1000)
        buckets: int = 4096     # hash table size
        max_tokens: int = 20    # words kept (CMPC: 20)

    def __init__(self, config: LSTMTextEncoder.Config) -> None:
        super().__init__()
        if config.buckets < 2 or config.max_tokens < 1 or config.dim < 1 or config.embed_dim < 1:
            raise ConfigError(f"lstm text encoder: buckets {config.buckets} must be ≥ 2, max_tokens, dim and embed_dim "
                              "≥ 1", key="text_encoder")
        self.config = config
        self.embed = nn.Embedding(config.buckets, config.embed_dim)
        self.lstm = nn.LSTM(config.embed_dim, config.dim, batch_first=True)

    @property
    def embed_dim(self) -> int:
        return self.config.dim

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        device = self.embed.weight.device
        padded, mask = hashed_batch(texts, self.config.buckets, self.config.max_tokens, cls=False)
        lengths = mask.sum(1)
        packed = pack_padded_sequence(self.embed(padded.to(device)), lengths, batch_first=True, enforce_sorted=False)
        out, (last, _) = self.lstm(packed)
        tokens, _ = pad_packed_sequence(out, batch_first=True, total_length=padded.shape[1])
        return TextFeatures(tokens, mask.to(device), last[-1])

    def forward(self, texts: Sequence[str]) -> TextFeatures:
        return self.encode(texts)


__all__ = ["LSTMTextEncoder"]
