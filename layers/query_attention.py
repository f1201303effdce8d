"""Query-aware dynamic attention (QRNet, CVPR 2022): gates on a visual map whose weights are generated
from the expression, so the backbone's features are modulated by what is being looked for.

A ``DynamicLinear`` layer has no weights of its own: a sentence vector μ is decoded into its
(in + 1) × out matrix (the last row the bias) as U(μ)·V, U(μ) = Linear(μ) reshaped (in + 1, k) and V
a learned (k, out) factor, zero-initialised — so every gate built on it starts at σ(0) = 0.5 whatever
the sentence, and learns how the sentence should move it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DynamicLinear(nn.Module):
    """forward(x (B, ..., in), μ (B, μ_dim)) → (B, ..., out) with per-sample weights decoded from μ
    through a rank-``rank`` factorisation (QRNet: k = 30)."""

    def __init__(self, in_dim: int, out_dim: int, mu_dim: int, rank: int = 30) -> None:
        super().__init__()
        if min(in_dim, out_dim, mu_dim, rank) < 1:
            raise ValueError(f"DynamicLinear needs positive sizes, got in {in_dim}, out {out_dim}, μ {mu_dim}, "
                             f"rank {rank}")
        self.in_dim, self.out_dim, self.rank = in_dim, out_dim, rank
        self.decoder = nn.Linear(mu_dim, (in_dim + 1) * rank)
        self.factor = nn.Parameter(torch.zeros(rank, out_dim))  # V: zero, so the layer starts at 0

    def forward(self, x: Tensor, mu: Tensor) -> Tensor:
        b = mu.shape[0]
        params = self.decoder(mu).view(b, self.in_dim + 1, self.rank) @ self.factor  # (B, in + 1, out)
        weight, bias = params[:, :-1], params[:, -1]
        flat = x.reshape(b, -1, self.in_dim) @ weight + bias[:, None]
        return flat.view(*x.shape[:-1], self.out_dim)


class QueryDynamicAttention(nn.Module):
    """QD-ATT on a (B, C, H, W) map under μ (B, μ_dim): channel gate σ(MLP_μ(avg-pool x) + MLP_μ(max-pool
    x)) with an MLP C → C/``reduction`` → C of dynamic layers, then spatial gate σ(DynamicLinear_μ(C → 1))
    at every position; x times both. Either gate can be switched off."""

    def __init__(self, channels: int, mu_dim: int, reduction: int = 16, rank: int = 30, channel: bool = True,
                 spatial: bool = True) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.ModuleList([DynamicLinear(channels, hidden, mu_dim, rank),
                                      DynamicLinear(hidden, channels, mu_dim, rank)]) if channel else None
        self.spatial = DynamicLinear(channels, 1, mu_dim, rank) if spatial else None

    def channel_gate(self, x: Tensor, mu: Tensor) -> Tensor:
        """(B, C) gate in (0, 1)."""
        assert self.channel is not None
        first, second = self.channel
        pooled = (x.mean((2, 3)), x.amax((2, 3)))
        return torch.sigmoid(sum(second(first(p, mu).relu(), mu) for p in pooled))  # type: ignore[arg-type]

    def spatial_gate(self, x: Tensor, mu: Tensor) -> Tensor:
        """(B, 1, H, W) gate in (0, 1)."""
        assert self.spatial is not None
        return torch.sigmoid(self.spatial(x.permute(0, 2, 3, 1), mu)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor, mu: Tensor) -> Tensor:
        if self.channel is not None:
            x = x * self.channel_gate(x, mu)[..., None, None]
        if self.spatial is not None:
            x = x * self.spatial_gate(x, mu)
        return x


__all__ = ["DynamicLinear", "QueryDynamicAttention"]
