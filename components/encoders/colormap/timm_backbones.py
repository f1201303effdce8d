"""Colormap encoders on timm backbones: the entity colormap → a feature pyramid at strides 4, 8, 16
and 32 (paper: MobileNetV2; ablation Table XVI: Swin-T / Swin-L; any other timm backbone by name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from esgkit.core import ColormapEncoder
from esgkit.layers.backbones import build_pyramid_backbone, load_pyramid_weights, pyramid_features

# A Swin small enough for CPU tests (≈0.7M parameters); the swin presets use it while tiny=True.
_TINY_SWIN = {"embed_dim": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 4], "window_size": 4}


class TimmColormapEncoder(nn.Module, ColormapEncoder):
    """Colormap → feature pyramid (strides 4-32) with any timm backbone (``timm`` name, no weights)."""

    @dataclass
    class Config:
        backbone: str = "mobilenetv2_035"  # any timm model name with stride 4..32 features
        img_size: int = 0                  # input size for backbones that need it (Swin); 0 = not passed
        options: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model keyword arguments
        checkpoint: str = ""               # local backbone weights: esgkit's, or timm's published classifier file

    input_kind: ClassVar[str] = "colormap"  # what the pipeline feeds: the colormap image

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        kwargs = {**(_TINY_SWIN if getattr(config, "tiny", False) else {}), **config.options}
        if config.img_size:
            kwargs["img_size"] = config.img_size
        self.backbone, self._channels, self.nhwc = build_pyramid_backbone(config.backbone, kwargs)
        if config.checkpoint:
            load_pyramid_weights(self.backbone, config.backbone, kwargs, config.checkpoint,
                                 f"colormap encoder {config.backbone}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self._channels

    def forward(self, colormap: torch.Tensor) -> list[torch.Tensor]:
        return pyramid_features(self.backbone, colormap, self.nhwc)


class MobileNetV2ColormapEncoder(TimmColormapEncoder):
    """Paper's colormap encoder: MobileNetV2 (default here: width-0.35 tiny variant; set backbone=mobilenetv2_100)."""

    Config = TimmColormapEncoder.Config  # the same options; the paper uses backbone=mobilenetv2_100


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
    class Config(SwinTinyColormapEncoder.Config):
        backbone: str = "swin_large_patch4_window7_224"  # the other fields: as Swin-T's
