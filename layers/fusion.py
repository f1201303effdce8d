"""Bilinear fusion of a feature map with a vector, MUTAN-style (Ben-younes et al. 2017): the
product of two low-rank projections summed over ``heads`` ranks — CMPC's entity perception fuses
[visual; spatial] with its entity+attribute vector this way (5 heads)."""

from __future__ import annotations

import torch
from torch import nn


class MutanFusion(nn.Module):
    """forward(x (B, C_x, H, W), q (B, C_q)) → (B, dim, H, W) = Σ_r tanh(W_r x) ⊙ tanh(U_r q)."""

    def __init__(self, x_dim: int, q_dim: int, dim: int, heads: int = 5) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"MUTAN fusion needs ≥ 1 head, got {heads}")
        self.dim, self.heads = dim, heads
        self.x_proj = nn.Conv2d(x_dim, dim * heads, 1)
        self.q_proj = nn.Linear(q_dim, dim * heads)

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xs = self.x_proj(x).tanh().view(b, self.heads, self.dim, h, w)
        qs = self.q_proj(q).tanh().view(b, self.heads, self.dim, 1, 1)
        return (xs * qs).sum(1)


__all__ = ["MutanFusion"]
