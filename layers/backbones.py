"""One timm pyramid backbone for every component that needs stride 4, 8, 16, 32 feature maps
(GELLA's colormap encoders, CropFormer's network), and timm backbones cut at one grid, at chosen
levels, or into stages (QRNet acts between them): which levels to take is read from the model's own
``feature_info``, and NHWC models (Swin) are turned to NCHW. Random initialisation: no hub here."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from esgkit.core.errors import ConfigError

STRIDES = (4, 8, 16, 32)


def _create_timm(backbone: str, kwargs: dict[str, Any], out_indices: tuple[int, ...] | None = None,
                 features_only: bool = True) -> nn.Module:
    """A randomly initialised timm model (``features_only`` or the whole classifier-less network); a bad
    name or option is a ConfigError that says where to look."""
    import timm

    extra = dict(kwargs) | ({"features_only": True} if features_only else {"num_classes": 0})
    if out_indices is not None:
        extra["out_indices"] = out_indices
    try:
        return timm.create_model(backbone, pretrained=False, **extra)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"timm cannot build {backbone!r}: {exc} (see timm.list_models())", key="backbone") from exc
    except TypeError as exc:
        raise ConfigError(f"timm backbone {backbone!r} rejects the options {extra}: {exc}", key="backbone") from exc


def feature_strides(backbone: str, kwargs: dict[str, Any]) -> list[int]:
    """The strides of a timm model's feature levels, from its own ``feature_info``, probed on the meta
    device (nothing is allocated)."""
    with torch.device("meta"):
        probe = _create_timm(backbone, kwargs)
    return [int(r) for r in probe.feature_info.reduction()]


def build_levels(backbone: str, kwargs: dict[str, Any], indices: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...], bool]:
    """A timm ``features_only`` model returning the feature levels ``indices``: (model, their channels,
    whether it returns NHWC tensors, as Swin does)."""
    model = _create_timm(backbone, kwargs, out_indices=indices)
    channels = tuple(int(c) for c in model.feature_info.channels())
    return model, channels, str(getattr(model, "output_fmt", "NCHW")).upper().endswith("NHWC")


def build_pyramid_backbone(backbone: str, kwargs: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...], bool]:
    """A timm ``features_only`` model that returns exactly the stride 4, 8, 16, 32 levels.

    Returns (model, channels, nhwc). The level indices come from the model's own ``feature_info``
    (probed on the meta device, so nothing is allocated twice): MobileNetV2 also has a stride-2
    level, Swin starts at stride 4 and returns NHWC tensors.
    """
    reductions = feature_strides(backbone, kwargs)
    missing = [s for s in STRIDES if s not in reductions]
    if missing:
        raise ConfigError(
            f"timm backbone {backbone!r} has feature strides {reductions}; a pyramid needs "
            f"4, 8, 16 and 32 (missing {missing}) — pick a hierarchical backbone", key="backbone")
    return build_levels(backbone, kwargs, tuple(reductions.index(s) for s in STRIDES))


def load_timm_weights(model: nn.Module, backbone: str, kwargs: dict[str, Any], path: str, what: str,
                      out_indices: tuple[int, ...] | None = None, renames: dict[str, str] | None = None) -> None:
    """Weights for a timm model esgkit built (``features_only`` at ``out_indices``, or with ``None`` the
    classifier-less network): its own state dict (as esgkit saves it), or a published timm checkpoint of
    the whole classifier (ImageNet weights as timm publishes them; the original repositories' layouts go
    through timm's own filter). The file is read here (safetensors or ``weights_only``); the published
    route must fit the whole classifier strictly before timm cuts it to ``model``'s form, so no tensor is
    silently left random. esgkit's own keys may carry a wrapper's names: ``renames`` maps their prefixes to
    ``model``'s (``{"body.": ""}``)."""
    import timm

    from esgkit.layers.weights import load_state, mismatch, raise_mismatch, read_state_dict

    state = read_state_dict(path, what)
    if renames and state and all(k.startswith(tuple(renames)) for k in state):
        def renamed(key: str) -> str:
            old = next(p for p in renames if key.startswith(p))
            return renames[old] + key[len(old):]

        state = {renamed(k): v for k, v in state.items()}
    own = mismatch(state, model.state_dict())
    if not own:
        load_state(model, state, f"{what} ({path})")
        return
    shape = {"features_only": True, "out_indices": out_indices} if out_indices is not None else {"num_classes": 0}
    try:  # timm's filter may edit the dict it is given: a copy each time
        timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"state_dict": dict(state)}, **kwargs)
        published = timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"state_dict": dict(state)},
                                      **kwargs, **shape)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise_mismatch(f"{what} ({path})", own, f"nor is it a published timm checkpoint of {backbone} ({first}); give "
                       "this backbone's weights as esgkit saves them or as timm publishes the whole classifier")
    weights = published.state_dict()
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()}, strict=True)


def load_pyramid_weights(model: nn.Module, backbone: str, kwargs: dict[str, Any], path: str, what: str) -> None:
    """``load_timm_weights`` for a ``build_pyramid_backbone`` model (its stride 4, 8, 16, 32 levels)."""
    reductions = feature_strides(backbone, kwargs)
    load_timm_weights(model, backbone, kwargs, path, what, tuple(reductions.index(s) for s in STRIDES))


def pyramid_features(model: nn.Module, x: torch.Tensor, nhwc: bool) -> list[torch.Tensor]:
    """The stride 4..32 maps of a ``build_pyramid_backbone`` model, NCHW."""
    feats = model(x)
    if nhwc:
        feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
    return list(feats)


D2_SWIN = {
    "d2_swin_tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "d2_swin_large": {"embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48], "window_size": 7},
    "d2_swin_test": {"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 2, 4], "window_size": 7},
}
"""detectron2's Swin (``D2SwinTransformer``, the backbone of Mask2Former's and CropFormer's releases) by
geometry: Swin-T, Swin-L (the CropFormer release: window 7) and a small one for tests."""


def d2_swin(name: str) -> nn.Module:
    """detectron2's Swin through transformers' ``SwinBackbone``, which computes what detectron2's does and
    timm's does not: it pads a stage's map before the cyclic shift (timm shifts, then pads: the outputs
    differ whenever a map is not a multiple of the window) and normalises each stage's output (detectron2's
    ``norm0..3``). The final LayerNorm of the classifier, which no feature map passes, is dropped."""
    from transformers import SwinBackbone, SwinConfig

    config = SwinConfig(**D2_SWIN[name], out_features=["stage1", "stage2", "stage3", "stage4"])
    body = SwinBackbone(config)
    body.swin.layernorm = nn.Identity()
    return body


class PyramidBackbone(nn.Module):
    """A timm backbone, detectron2's Swin (``D2_SWIN``) or HorNet (``layers.hornet.HORNET``) as a module:
    forward(x) → NCHW maps at strides 4, 8, 16, 32 (``channels``)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        from .hornet import HORNET, HorNet

        super().__init__()
        self.kind, self.nhwc = ("swin" if name in D2_SWIN else "hornet" if name in HORNET else "timm"), False
        if self.kind == "swin":
            self.body = d2_swin(name)
            self.channels = [D2_SWIN[name]["embed_dim"] * 2**k for k in range(4)]
        elif self.kind == "hornet":
            self.body = HorNet(HORNET[name])
            self.channels = list(self.body.channels)
        else:
            self.body, channels, self.nhwc = build_pyramid_backbone(name, dict(options or {}))
            self.channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "swin":
            return list(self.body(x).feature_maps)
        if self.kind == "hornet":
            return self.body(x)
        return pyramid_features(self.body, x, self.nhwc)


class GridBackbone(nn.Module):
    """A timm backbone cut at one stride: forward(x) → the NCHW map at ``stride`` (``channels``
    channels), e.g. ResNet's C5 at stride 32 — the visual grid the referring systems score."""

    def __init__(self, name: str, stride: int, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        options = dict(options or {})
        reductions = feature_strides(name, options)
        if stride not in reductions:
            raise ConfigError(f"timm backbone {name!r} has feature strides {reductions}; stride {stride} is not one "
                              "of them", key="stride")
        self.build = (name, options, (reductions.index(stride),))
        self.body, channels, self.nhwc = build_levels(*self.build)
        self.channels = channels[-1]
        self.stride = stride

    def load(self, path: str, what: str) -> None:
        """Weights from ``path``: esgkit's own, or timm's published ImageNet file (``load_timm_weights``)."""
        load_timm_weights(self.body, self.build[0], self.build[1], path, what, self.build[2], renames={"body.": ""})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pyramid_features(self.body, x, self.nhwc)[-1]


class LevelBackbone(nn.Module):
    """A timm backbone's feature levels by index (timm's ``out_indices``): forward(x) → their NCHW
    maps (``channels``, ``reductions``), e.g. ResNet's res3..res5 (indices 2, 3, 4) — at strides 8, 16,
    32, or all at stride 8 with ``output_stride: 8`` (DeepLab's dilated ResNet)."""

    def __init__(self, name: str, levels: tuple[int, ...], options: dict[str, Any] | None = None) -> None:
        super().__init__()
        options = dict(options or {})
        reductions = feature_strides(name, options)
        if not levels or any(not 0 <= k < len(reductions) for k in levels):
            raise ConfigError(f"timm backbone {name!r} has feature levels 0..{len(reductions) - 1} (strides "
                              f"{reductions}); levels {list(levels)} are not all among them", key="levels")
        self.build = (name, options, tuple(levels))
        self.body, channels, self.nhwc = build_levels(*self.build)
        self.channels = list(channels)
        self.reductions = [reductions[k] for k in levels]

    def load(self, path: str, what: str) -> None:
        """Weights from ``path``: esgkit's own, or timm's published ImageNet file (``load_timm_weights``)."""
        load_timm_weights(self.body, self.build[0], self.build[1], path, what, self.build[2], renames={"body.": ""})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return pyramid_features(self.body, x, self.nhwc)


class StagedBackbone(nn.Module):
    """A timm backbone taken apart into its stem and stages, so a module can act between the stages —
    QRNet modulates each Swin stage's output by the expression before the next stage sees it.
    ``forward(x, between)`` → the NCHW output of every stage (``channels``, ``reductions``), each
    first passed through ``between(stage index, NCHW map)``. Hierarchical timm models with
    ``patch_embed`` + ``layers`` (Swin) or ``stem`` + ``stages`` (ConvNeXt, EfficientFormer …)."""

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.build = (name, dict(options or {}))
        model = _create_timm(name, self.build[1], features_only=False)
        for stem, stages in (("patch_embed", "layers"), ("stem", "stages")):
            if isinstance(getattr(model, stem, None), nn.Module) and isinstance(getattr(model, stages, None), nn.Sequential):
                self.stem, self.stages = getattr(model, stem), getattr(model, stages)
                self.parts = (stem, stages)  # the timm model's names of the two
                break
        else:
            raise ConfigError(f"timm backbone {name!r} has no stem + stages to act between (patch_embed + layers as "
                              "Swin, or stem + stages as ConvNeXt); pick a hierarchical backbone", key="backbone")
        info = model.feature_info
        self.channels = [int(f["num_chs"]) for f in info][-len(self.stages):]
        self.reductions = [int(f["reduction"]) for f in info][-len(self.stages):]
        self.nhwc = str(getattr(model, "output_fmt", "NCHW")).upper() == "NHWC"

    def load(self, path: str, what: str) -> None:
        """Weights from ``path``: esgkit's own (``stem.*``, ``stages.*``), or timm's published ImageNet file of
        the whole classifier (``load_timm_weights`` on the network the stem and stages were taken from)."""
        whole = nn.Module()  # the stem and stages under the timm model's own names
        whole.add_module(self.parts[0], self.stem)
        whole.add_module(self.parts[1], self.stages)
        load_timm_weights(whole, self.build[0], self.build[1], path, what,
                          renames={"stem.": f"{self.parts[0]}.", "stages.": f"{self.parts[1]}."})

    def forward(self, x: torch.Tensor, between: Any = None) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for k, stage in enumerate(self.stages):
            x = stage(x)
            feat = x.permute(0, 3, 1, 2) if self.nhwc else x
            if between is not None:
                feat = between(k, feat)
                x = feat.permute(0, 2, 3, 1) if self.nhwc else feat
            out.append(feat)
        return out


__all__ = ["D2_SWIN", "STRIDES", "GridBackbone", "LevelBackbone", "PyramidBackbone", "StagedBackbone",
           "build_pyramid_backbone", "d2_swin", "load_pyramid_weights", "load_timm_weights", "pyramid_features"]
