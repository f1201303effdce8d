"""One timm pyramid backbone for every component that needs stride 4, 8, 16, 32 feature maps
(GELLA's colormap encoders, CropFormer's network): which levels to take is read from the model's own
``feature_info``, and NHWC models (Swin) are turned to NCHW. Random initialisation: no hub here."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from esgkit.core.errors import ConfigError

STRIDES = (4, 8, 16, 32)


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
            f"timm backbone {backbone!r} has feature strides {reductions}; a pyramid needs "
            f"4, 8, 16 and 32 (missing {missing}) — pick a hierarchical backbone", key="backbone")
    indices = tuple(reductions.index(s) for s in STRIDES)
    model = _create_timm(backbone, kwargs, out_indices=indices)
    channels = tuple(int(c) for c in model.feature_info.channels())
    nhwc = str(getattr(model, "output_fmt", "NCHW")).upper().endswith("NHWC")
    return model, channels, nhwc


def pyramid_features(model: nn.Module, x: torch.Tensor, nhwc: bool) -> list[torch.Tensor]:
    """The stride 4..32 maps of a ``build_pyramid_backbone`` model, NCHW."""
    feats = model(x)
    if nhwc:
        feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
    return list(feats)


class PyramidBackbone(nn.Module):
    """A timm backbone as a module: forward(x) → NCHW maps at strides 4, 8, 16, 32 (``channels``)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.body, channels, self.nhwc = build_pyramid_backbone(name, dict(options or {}))
        self.channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return pyramid_features(self.body, x, self.nhwc)


class GridBackbone(nn.Module):
    """A timm backbone cut at one stride: forward(x) → the NCHW map at ``stride`` (``channels``
    channels), e.g. ResNet's C5 at stride 32 — the visual grid the referring systems score."""

    def __init__(self, name: str, stride: int, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        options = dict(options or {})
        with torch.device("meta"):
            probe = _create_timm(name, options)
        reductions = list(probe.feature_info.reduction())
        if stride not in reductions:
            raise ConfigError(f"timm backbone {name!r} has feature strides {reductions}; stride {stride} is not one "
                              "of them", key="stride")
        self.body = _create_timm(name, options, out_indices=(reductions.index(stride),))
        self.channels = int(self.body.feature_info.channels()[-1])
        self.stride = stride
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).upper().endswith("NHWC")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pyramid_features(self.body, x, self.nhwc)[-1]


class LevelBackbone(nn.Module):
    """A timm backbone's feature levels by index (timm's ``out_indices``): forward(x) → their NCHW
    maps (``channels``, ``reductions``), e.g. ResNet's res3..res5 (indices 2, 3, 4) — at strides 8, 16,
    32, or all at stride 8 with ``output_stride: 8`` (DeepLab's dilated ResNet)."""

    def __init__(self, name: str, levels: tuple[int, ...], options: dict[str, Any] | None = None) -> None:
        super().__init__()
        options = dict(options or {})
        with torch.device("meta"):
            probe = _create_timm(name, options)
        count = len(probe.feature_info.reduction())
        bad = [k for k in levels if not 0 <= k < count]
        if bad or not levels:
            raise ConfigError(f"timm backbone {name!r} has feature levels 0..{count - 1} (strides "
                              f"{list(probe.feature_info.reduction())}); levels {list(levels)} are not all among them",
                              key="levels")
        self.body = _create_timm(name, options, out_indices=tuple(levels))
        self.channels = [int(c) for c in self.body.feature_info.channels()]
        self.reductions = [int(r) for r in self.body.feature_info.reduction()]
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).upper().endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return pyramid_features(self.body, x, self.nhwc)


__all__ = ["STRIDES", "GridBackbone", "LevelBackbone", "PyramidBackbone", "build_pyramid_backbone", "pyramid_features"]
