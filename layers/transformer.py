"""A DETR-style transformer encoder whose positions are added to the queries and keys only (never the
values), post-norm: the fusion encoder of the referring systems (PBREC-MT's visual-language encoder,
QRNet's). ``torch.nn.TransformerEncoderLayer`` cannot take positions that way, hence this module."""

from __future__ import annotations

import torch
from torch import nn


class PositionalEncoderLayer(nn.Module):
    """Self-attention (q = k = x + pos, v = x) and a GELU feed-forward, each with dropout, a residual
    and a LayerNorm after it."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """x, pos (B, L, D); padding (B, L) bool, True where a token is padding (never attended to)."""
        q = x + pos
        x = self.norm1(x + self.drop1(self.attn(q, q, x, key_padding_mask=padding, need_weights=False)[0]))
        return self.norm2(x + self.drop2(self.ffn(x)))


class PositionalEncoder(nn.Module):
    """An input LayerNorm then ``layers`` ``PositionalEncoderLayer``s."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, layers: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(PositionalEncoderLayer(dim, heads, ffn_dim, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x, pos, padding)
        return x


__all__ = ["PositionalEncoder", "PositionalEncoderLayer"]
