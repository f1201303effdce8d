"""Association heads (paper eq. 16): logits v×q between noun embeddings E_vl and entity embeddings E_vc."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from esgkit.core import Associator, CompatibilityError


class FCAssociator(nn.Module, Associator):
    """FC(E_vl) · FC(E_vc)ᵀ — the paper's association (one linear layer per side)."""

    @dataclass
    class Config:
        dim: int = 32  # shared space width (paper preset: 256)

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.lang_dim: int | None = None
        self.entity_dim: int | None = None

    def _head(self, in_dim: int) -> nn.Module:
        return nn.Linear(in_dim, self.config.dim)

    def configure(self, lang_dim: int, entity_dim: int) -> None:
        if self.lang_dim is not None:
            if (self.lang_dim, self.entity_dim) != (lang_dim, entity_dim):
                raise CompatibilityError(f"{type(self).__name__} was built for language dim {self.lang_dim} and "
                                         f"entity dim {self.entity_dim}, not {lang_dim} and {entity_dim}")
            return
        self.lang_dim, self.entity_dim = int(lang_dim), int(entity_dim)
        self.lang = self._head(lang_dim)
        self.entity = self._head(entity_dim)

    def forward(self, e_vl: torch.Tensor, e_vc: torch.Tensor) -> torch.Tensor:
        """(v, D_l), (q, D_c) → (v, q); also batched: (B, v, D_l), (B, q, D_c) → (B, v, q)."""
        if self.lang_dim is None:
            raise CompatibilityError(f"{type(self).__name__} used before configure(lang_dim, entity_dim)")
        return self.lang(e_vl) @ self.entity(e_vc).transpose(-1, -2)


class MLPAssociator(FCAssociator):
    """FC+ReLU+FC on each side, then the dot product (Table XXIII ablation)."""

    @dataclass
    class Config:
        dim: int = 32

    def _head(self, in_dim: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_dim, self.config.dim), nn.ReLU(), nn.Linear(self.config.dim, self.config.dim))
