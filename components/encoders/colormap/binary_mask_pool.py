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

POOLINGS = ("avg", "conv", "cls")
CONV_SIZE = 14  # Table XIX's "Conv": a learnable 14 × 14 kernel


class BinaryMaskPoolEncoder(nn.Module, ColormapEncoder):
    """Table XIX alternative: each entity's binary mask encoded alone, pooled, painted back (cost ∝ N).

    Input (``input_kind = "masks"``): float (B, N, H, W) binary masks instead of the colormap — the
    GELLA pipeline feeds ``EntityMasks`` resized like the colormap. Each mask, scaled to
    {0, 1}, {-1, 1} or {0, 255} (Table XIX "mask value range"), goes through the backbone as its own
    image (one forward pass per non-empty mask, in batches of ``chunk``; an empty, padded mask is
    no entity and gets the zero vector); every level is pooled inside the mask to one vector per
    entity (Table XIX "pooling style": ``avg``; ``conv``, a learnable 14×14 kernel over the masked
    features resized to 14×14, depthwise to stay small and started as the average; ``cls``, a learnable
    token attending over the positions inside the mask), ``attention_blocks`` transformer blocks let
    the entity vectors of each level attend to each other (Table XIX "attention blocks"; the paper's
    cross-attention to the image is the fuser and mask decoder's), and the pyramid is the sum of each
    entity's vector painted over its (downsampled) mask. The output therefore has the colormap
    encoder's shape and feeds the same fuser and mask decoder.
    """

    @dataclass
    class Config:
        backbone: str = "mobilenetv2_035"
        img_size: int = 0
        options: dict[str, Any] = field(default_factory=dict)
        value_range: str = "0_255"   # one of 0_1, -1_1, 0_255
        pooling: str = "avg"         # avg | conv | cls (Table XIX "pooling style")
        attention_blocks: int = 0    # self-attention blocks among the entity vectors of each level
        chunk: int = 64              # masks per backbone call (bounds memory for many entities)

    input_kind: ClassVar[str] = "masks"

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.value_range not in ("0_1", "-1_1", "0_255"):
            raise ConfigError(f"got {config.value_range!r}; use 0_1, -1_1 or 0_255", key="value_range")
        if config.pooling not in POOLINGS:
            raise ConfigError(f"got {config.pooling!r}; use {', '.join(POOLINGS)}", key="pooling")
        if config.attention_blocks < 0:
            raise ConfigError(f"must be >= 0, got {config.attention_blocks}", key="attention_blocks")
        self.config = config
        kwargs = dict(config.options)
        if config.img_size:
            kwargs["img_size"] = config.img_size
        self.backbone, self._channels, self.nhwc = build_pyramid_backbone(config.backbone, kwargs)
        channels = self._channels
        if config.pooling == "conv":  # starts as the average over the mask (a uniform kernel)
            self.pool_convs = nn.ModuleList(nn.Conv2d(c, c, CONV_SIZE, groups=c, bias=False) for c in channels)
            for conv in self.pool_convs:
                nn.init.constant_(conv.weight, 1.0 / CONV_SIZE ** 2)
        elif config.pooling == "cls":
            self.cls_tokens = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in channels)
            self.cls_keys = nn.ModuleList(nn.Linear(c, c) for c in channels)
        self.entity_attention = nn.ModuleList(
            nn.TransformerEncoder(nn.TransformerEncoderLayer(c, 1, 2 * c, dropout=0.0, batch_first=True),
                                  config.attention_blocks, enable_nested_tensor=False)
            for c in channels) if config.attention_blocks else None

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self._channels

    def _scale(self, masks: torch.Tensor) -> torch.Tensor:
        if self.config.value_range == "-1_1":
            return masks * 2 - 1
        if self.config.value_range == "0_255":
            return masks * 255
        return masks

    def _pool(self, level: int, f: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) features, (M, 1, h, w) mask share per cell → (M, C), one vector per mask."""
        area = weight.sum((2, 3)).clamp_min(1e-6)
        if self.config.pooling == "conv":
            grid = F.adaptive_avg_pool2d(f * weight, CONV_SIZE) * (f.shape[-2] * f.shape[-1] / area)[..., None, None]
            return self.pool_convs[level](grid).flatten(1)
        if self.config.pooling == "cls":
            keys = self.cls_keys[level](f.flatten(2).transpose(1, 2))                     # (M, hw, C)
            logits = keys @ self.cls_tokens[level] / f.shape[1] ** 0.5 + weight.flatten(1).clamp_min(1e-12).log()
            return torch.einsum("mp,mcp->mc", logits.softmax(1), f.flatten(2))
        return (f * weight).sum((2, 3)) / area

    def forward(self, masks: torch.Tensor) -> list[torch.Tensor]:
        b, n, h, w = masks.shape
        out = [masks.new_zeros(b, c, h // s, w // s) for c, s in zip(self._channels, STRIDES)]
        if n == 0:
            return out
        padding = masks.flatten(2).sum(2) == 0                                   # (B, N) empty (padded) masks
        # Only the non-empty masks go through the backbone: a padded mask is no entity, and in training its
        # blank image would enter BatchNorm's statistics (a quarter of a batch of 8 ShapesWorld samples).
        real = ~padding.flatten()
        flat = masks.reshape(b * n, 1, h, w)[real]
        pooled: list[list[torch.Tensor]] = [[] for _ in STRIDES]
        for start in range(0, flat.shape[0], self.config.chunk):
            m = flat[start:start + self.config.chunk]
            feats = self.backbone(self._scale(m).expand(-1, 3, -1, -1))
            for k, f in enumerate(feats):
                f = f.permute(0, 3, 1, 2) if self.nhwc else f
                pooled[k].append(self._pool(k, f, F.adaptive_avg_pool2d(m, f.shape[-2:])))
        for k, s in enumerate(STRIDES):
            vec = masks.new_zeros(b * n, self._channels[k])                     # an empty mask's vector: 0
            if pooled[k]:
                vec[real] = torch.cat(pooled[k])
            vec = vec.reshape(b, n, -1)                                          # (B, N, C)
            if self.entity_attention is not None:
                vec = self.entity_attention[k](vec, src_key_padding_mask=padding & ~padding.all(1, keepdim=True))
            area = F.adaptive_avg_pool2d(masks, (h // s, w // s))               # (B, N, h, w)
            out[k] = torch.einsum("bnc,bnhw->bchw", vec, area)
        return out


__all__ = ["BinaryMaskPoolEncoder"]
