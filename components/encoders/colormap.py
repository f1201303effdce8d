"""Colormap encoders: a timm backbone turns the entity colormap into a feature pyramid at strides
4, 8, 16 and 32 (paper: MobileNetV2; ablation: Swin-T / Swin-L), and the Table XIX alternative
that encodes every entity's binary mask on its own and pools it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from esgkit.core import ColormapEncoder, ConfigError

STRIDES = (4, 8, 16, 32)
# A Swin small enough for CPU tests (≈0.7M parameters); the swin presets use it while tiny=True.
_TINY_SWIN = {"embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 4], "window_size": 4}


def _create_timm(backbone: str, kwargs: dict[str, Any], out_indices: tuple[int, ...] | None = None) -> nn.Module:
    import timm

    extra = dict(kwargs)
    if out_indices is not None:
        extra["out_indices"] = out_indices
    try:
        return timm.create_model(backbone, pretrained=False, features_only=True, **extra)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"timm cannot build {backbone!r}: {exc} (see timm.list_models())", key="backbone") from exc
    except TypeError as exc:
        raise ConfigError(f"timm backbone {backbone!r} rejects the options {extra}: {exc}", key="backbone") from exc


def build_pyramid_backbone(backbone: str, kwargs: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...], bool]:
    """A timm ``features_only`` model that returns exactly the stride 4, 8, 16, 32 levels.

    Returns (model, channels, nhwc). The level indices come from the model's own ``feature_info``
    (probed on the meta device, so nothing is allocated twice): MobileNetV2 also has a stride-2
    level, Swin starts at stride 4 and returns NHWC tensors.
    """
    with torch.device("meta"):
        probe = _create_timm(backbone, kwargs)
    reductions = list(probe.feature_info.reduction())
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise ConfigError(
            f"timm backbone {backbone!r} has feature strides {reductions}; a colormap encoder needs "
            f"4, 8, 16 and 32 (missing {missing}) — pick a hierarchical backbone", key="backbone")
    indices = tuple(reductions.index(s) for s in STRIDES)
    model = _create_timm(backbone, kwargs, out_indices=indices)
    channels = tuple(int(c) for c in model.feature_info.channels())
    nhwc = str(getattr(model, "output_fmt", "NCHW")).upper().endswith("NHWC")
    return model, channels, nhwc


class TimmColormapEncoder(nn.Module, ColormapEncoder):
    """Colormap → feature pyramid (strides 4-32) with any timm backbone (``timm`` name, no weights)."""

    @dataclass
    class Config:
        backbone: str = "mobilenetv2_035"  # any timm model name with stride 4..32 features
        img_size: int = 0                  # input size for backbones that need it (Swin); 0 = not passed
        options: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model keyword arguments
        checkpoint: str = ""               # optional local safetensors / torch file with backbone weights

    input_kind: ClassVar[str] = "colormap"  # what the pipeline feeds: the colormap image

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        kwargs = {**(_TINY_SWIN if getattr(config, "tiny", False) else {}), **config.options}
        if config.img_size:
            kwargs["img_size"] = config.img_size
        self.backbone, self._channels, self.nhwc = build_pyramid_backbone(config.backbone, kwargs)
        if config.checkpoint:
            from esgkit.components.encoders.weights import load_weights

            load_weights(self.backbone, config.checkpoint, what=f"colormap encoder {config.backbone}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self._channels

    def forward(self, colormap: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(colormap)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return list(feats)


class MobileNetV2ColormapEncoder(TimmColormapEncoder):
    """Paper's colormap encoder: MobileNetV2 (default here: width-0.35 tiny variant; set backbone=mobilenetv2_100)."""

    @dataclass
    class Config:
        backbone: str = "mobilenetv2_035"  # paper: mobilenetv2_100
        img_size: int = 0
        options: dict[str, Any] = field(default_factory=dict)
        checkpoint: str = ""


class SwinTinyColormapEncoder(TimmColormapEncoder):
    """Swin-T colormap encoder (Table XVI ablation); tiny=true (default) shrinks it for tests."""

    @dataclass
    class Config:
        backbone: str = "swin_tiny_patch4_window7_224"
        img_size: int = 128  # Swin needs the input size at build time (= the pipeline's mask_size)
        tiny: bool = True    # shrink to a ≈0.7M-parameter Swin for tests; false = the real Swin-T
        options: dict[str, Any] = field(default_factory=dict)
        checkpoint: str = ""


class SwinLargeColormapEncoder(TimmColormapEncoder):
    """Swin-L colormap encoder (Table XVI ablation); tiny=true (default) shrinks it for tests."""

    @dataclass
    class Config:
        backbone: str = "swin_large_patch4_window7_224"
        img_size: int = 128  # Swin needs the input size at build time (= the pipeline's mask_size)
        tiny: bool = True    # shrink to a ≈0.7M-parameter Swin for tests; false = the real Swin-L
        options: dict[str, Any] = field(default_factory=dict)
        checkpoint: str = ""


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
