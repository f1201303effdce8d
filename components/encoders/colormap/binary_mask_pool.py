"""The Table XIX alternative to the colormap: every entity's binary mask encoded on its own by a
timm backbone, pooled inside the mask and painted back, so its output has the colormap encoder's
shape (cost ∝ number of entities)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from esgkit.core import ColormapEncoder, ConfigError
from esgkit.layers.backbones import STRIDES, build_pyramid_backbone


class BinaryMaskPoolEncoder(nn.Module, ColormapEncoder):
    """Table XIX alternative: each entity's binary mask encoded alone, pooled, painted back (cost ∝ N).

    Input (``input_kind = "masks"``): float (B, N, H, W) binary masks instead of the colormap — the
    GELLA pipeline feeds ``EntityMasks`` resized like the colormap. Each mask, scaled to
    {0, 1}, {-1, 1} or {0, 255} (Table XIX "mask value range"), goes through the backbone as its own
    image (B·N forward passes in one batch); every level is average-pooled inside the mask to one
    vector per entity, and the pyramid is the sum of each entity's vector painted over its
    (downsampled) mask. The output therefore has the colormap encoder's shape and feeds the same
    fuser and mask decoder.
    """

    @dataclass
    class Config:
        backbone: str = "mobilenetv2_035"
        img_size: int = 0
        options: dict[str, Any] = field(default_factory=dict)
        value_range: str = "0_255"   # one of 0_1, -1_1, 0_255
        chunk: int = 64              # masks per backbone call (bounds memory for many entities)

    input_kind: ClassVar[str] = "masks"

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.value_range not in ("0_1", "-1_1", "0_255"):
            raise ConfigError(f"got {config.value_range!r}; use 0_1, -1_1 or 0_255", key="value_range")
        self.config = config
        kwargs = dict(config.options)
        if config.img_size:
            kwargs["img_size"] = config.img_size
        self.backbone, self._channels, self.nhwc = build_pyramid_backbone(config.backbone, kwargs)

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self._channels

    def _scale(self, masks: torch.Tensor) -> torch.Tensor:
        if self.config.value_range == "-1_1":
            return masks * 2 - 1
        if self.config.value_range == "0_255":
            return masks * 255
        return masks

    def forward(self, masks: torch.Tensor) -> list[torch.Tensor]:
        b, n, h, w = masks.shape
        out = [masks.new_zeros(b, c, h // s, w // s) for c, s in zip(self._channels, STRIDES)]
        if n == 0:
            return out
        flat = masks.reshape(b * n, 1, h, w)
        pooled: list[list[torch.Tensor]] = [[] for _ in STRIDES]
        for start in range(0, b * n, self.config.chunk):
            m = flat[start:start + self.config.chunk]
            feats = self.backbone(self._scale(m).expand(-1, 3, -1, -1))
            for k, f in enumerate(feats):
                f = f.permute(0, 3, 1, 2) if self.nhwc else f
                weight = F.adaptive_avg_pool2d(m, f.shape[-2:])
                pooled[k].append((f * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6))
        for k, s in enumerate(STRIDES):
            vec = torch.cat(pooled[k]).reshape(b, n, -1)                       # (B, N, C)
            area = F.adaptive_avg_pool2d(masks, (h // s, w // s))               # (B, N, h, w)
            out[k] = torch.einsum("bnc,bnhw->bchw", vec, area)
        return out


__all__ = ["BinaryMaskPoolEncoder"]
