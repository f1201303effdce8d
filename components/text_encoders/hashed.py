"""A tiny text encoder trained from scratch: words hashed into a fixed table (no vocabulary file to
ship or build), learned embeddings with 1-D sine positions, a small transformer. For presets that
train their language side on ShapesWorld alone, and for fast tests."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from esgkit.core import TextEncoder, TextFeatures
from esgkit.core.errors import ConfigError
from esgkit.layers.positions import sine_1d
from esgkit.layers.transformer import PositionalEncoder

WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|[^\sa-z0-9]")


def hash_words(text: str, buckets: int) -> list[int]:
    """Token ids of ``text``: 0 is [CLS], words (lower-cased; punctuation marks are words) map to
    1 + crc32(word) mod (buckets − 1), so the same word always gets the same id."""
    return [0] + [1 + zlib.crc32(w.encode()) % (buckets - 1) for w in WORD.findall(text.lower())]


def hashed_batch(texts: Sequence[str], buckets: int, max_tokens: int, cls: bool = True) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """``texts`` as ``hash_words`` ids (with the [CLS] id 0 first, or without), each cut to
    ``max_tokens`` and padded with 0: (ids (B, T) long, mask (B, T) bool, True on real tokens). A text
    with no word keeps one id 0, so no row is empty."""
    rows = [hash_words(t, buckets)[0 if cls else 1:][:max_tokens] or [0] for t in texts]
    ids = torch.zeros(len(rows), max((len(r) for r in rows), default=1), dtype=torch.long)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = torch.tensor(row)
        mask[k, : len(row)] = True
    return ids, mask


class HashedTextEncoder(nn.Module, TextEncoder):
    """Hashed word embeddings → transformer encoder; sentence vector = the [CLS] position's state."""

    @dataclass
    class Config:
        dim: int = 64
        layers: int = 2
        heads: int = 4
        ffn_dim: int = 128
        buckets: int = 4096    # hash table size (collisions are rare for a few hundred words)
        max_tokens: int = 20   # [CLS] included
        dropout: float = 0.0

    def __init__(self, config: HashedTextEncoder.Config) -> None:
        super().__init__()
        if config.buckets < 2 or config.max_tokens < 2 or config.dim % 2:
            raise ConfigError(f"hashed text encoder: buckets {config.buckets} and max_tokens {config.max_tokens} must "
                              f"be ≥ 2 and dim {config.dim} even", key="text_encoder")
        self.config = config
        self.embed = nn.Embedding(config.buckets, config.dim)
        self.encoder = PositionalEncoder(config.dim, config.heads, config.ffn_dim, config.layers, config.dropout)

    @property
    def embed_dim(self) -> int:
        return self.config.dim

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        device = self.embed.weight.device
        padded, mask = hashed_batch(texts, self.config.buckets, self.config.max_tokens)
        padded, mask = padded.to(device), mask.to(device)
        pos = sine_1d(padded.shape[1], self.config.dim, device=device).expand(len(texts), -1, -1)
        tokens = self.encoder(self.embed(padded), pos, ~mask)
        return TextFeatures(tokens, mask, tokens[:, 0])

    def forward(self, texts: Sequence[str]) -> TextFeatures:
        return self.encode(texts)


__all__ = ["HashedTextEncoder", "hash_words", "hashed_batch"]
