"""ResoBlend (paper eq. 14-15) and the identity fuser.

For every pyramid level z^s (B, C_s, H_s, W_s) and the CLIP grid tokens Z_v (B, h·w, C_v):

    Z'_v  = Z_v + SA(LN(Z_v))                                   (SA)
    z_d^s = FFN(XAttn(q = f_q(Z'_v), k = f_k(z^s), v = f_v(z^s))) + Z_v     (CA, FF, RES)
    z_w^s = BIINTERP(CONV3x3(z_d^s)) to H_s × W_s              (CONV)
    out^s = z_w^s            (paper eq. 15, the default; mask_residual: true adds z^s)

Z_v is first projected to the fuser width ``dim`` (the "+ Z_v" residual uses that projection), so
the attention cost does not depend on CLIP's width. By default the decoder gets z_w^s alone, the
paper's eq. 15 as written; ``mask_residual: true`` adds it to the mask feature z^s ("augment pyramid
mask features Z_c with Z_v"), the shipped gella_tiny's form: the image branch lives on the coarse CLIP
grid, so without the addition the colormap's stride-4 detail reaches the decoder only through it
(measured: docs/ablations.md). Switches (Table XVII): SA off →
Z'_v = Z_v; CA off → the cross-attention is skipped (z_d from Z'_v alone, so the image branch never
sees the mask features); FF off → no FFN; RES off → no "+ Z_v"; CONV off → a 1×1 projection
instead of the 3×3 convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from esgkit.core import CompatibilityError, Fuser


class _Level(nn.Module):
    """Cross-attention + FFN + conv for one pyramid level."""

    def __init__(self, dim: int, channels: int, heads: int, ffn_dim: int, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.ca:
            self.norm_q = nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, heads, kdim=channels, vdim=channels, batch_first=True)
        if cfg.ff:
            self.norm_ff = nn.LayerNorm(dim)
            self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        k = 3 if cfg.conv else 1
        self.out = nn.Conv2d(dim, channels, kernel_size=k, padding=k // 2)

    def forward(self, zv: torch.Tensor, zv_sa: torch.Tensor, grid: tuple[int, int], z: torch.Tensor) -> torch.Tensor:
        x = zv_sa
        if self.cfg.ca:
            kv = z.flatten(2).transpose(1, 2)                      # (B, H_s·W_s, C_s)
            x, _ = self.attn(self.norm_q(x), kv, kv, need_weights=False)
        if self.cfg.ff:
            x = self.ffn(self.norm_ff(x))
        if self.cfg.res:
            x = x + zv
        b, _, d = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, d, *grid))
        return F.interpolate(x, size=z.shape[-2:], mode="bilinear", align_corners=False)


class ResoBlendFuser(nn.Module, Fuser):
    """ResoBlend: CLIP grid tokens cross-attend to every colormap level (SA/CA/FF/RES/CONV switchable)."""

    @dataclass
    class Config:
        dim: int = 32        # fuser width (paper preset: 256)
        heads: int = 2       # attention heads (paper preset: 8)
        ffn_dim: int = 64    # FFN hidden width (paper preset: 1024)
        sa: bool = True
        ca: bool = True
        ff: bool = True
        res: bool = True
        conv: bool = True
        mask_residual: bool = False  # false: z_w^s alone (paper eq. 15); true: z^s + z_w^s (shipped gella_tiny)

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.dim % config.heads:
            from esgkit.core import ConfigError

            raise ConfigError(f"dim {config.dim} is not divisible by heads {config.heads}", key="dim")
        self.config = config
        self.vision_dim: int | None = None
        self.pyramid_channels: tuple[int, ...] | None = None

    def configure(self, vision_dim: int, pyramid_channels: tuple[int, ...]) -> None:
        pyramid_channels = tuple(int(c) for c in pyramid_channels)
        if self.vision_dim is not None:
            if (self.vision_dim, self.pyramid_channels) != (vision_dim, pyramid_channels):
                raise CompatibilityError(
                    f"resoblend fuser was built for vision dim {self.vision_dim} and pyramid "
                    f"{self.pyramid_channels}, not {vision_dim} and {pyramid_channels}")
            return
        c = self.config
        self.vision_dim, self.pyramid_channels = int(vision_dim), pyramid_channels
        self.proj = nn.Linear(vision_dim, c.dim)
        if c.sa:
            self.norm_sa = nn.LayerNorm(c.dim)
            self.self_attn = nn.MultiheadAttention(c.dim, c.heads, batch_first=True)
        self.levels = nn.ModuleList(_Level(c.dim, ch, c.heads, c.ffn_dim, c) for ch in pyramid_channels)

    def forward(self, z_v: torch.Tensor, grid: tuple[int, int], pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.vision_dim is None:
            raise CompatibilityError("resoblend fuser used before configure(vision_dim, pyramid_channels)")
        zv = self.proj(z_v)
        zv_sa = zv
        if self.config.sa:
            h = self.norm_sa(zv)
            zv_sa = zv + self.self_attn(h, h, h, need_weights=False)[0]
        fused = [level(zv, zv_sa, tuple(grid), z) for level, z in zip(self.levels, pyramid)]
        return [z + w for z, w in zip(pyramid, fused)] if self.config.mask_residual else fused


class IdentityFuser(nn.Module, Fuser):
    """No fusion: the mask decoder sees the colormap pyramid only (image features unused)."""

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config

    def configure(self, vision_dim: int, pyramid_channels: tuple[int, ...]) -> None:
        self.vision_dim, self.pyramid_channels = vision_dim, tuple(pyramid_channels)

    def forward(self, z_v: torch.Tensor, grid: tuple[int, int], pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(pyramid)
