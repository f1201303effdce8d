"""The ``cropformer`` and ``mask2former`` segmenters: preprocessing, the network, fusion, checkpoints.

``mask2former`` is the same code path with a single view (the full image) and no batch level —
the paper's baseline. With ``short_side: 0`` either runs at the original resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.core import EntityMasks, Segmenter
from esgkit.core.errors import ConfigError, InputError
from esgkit.layers.weights import load_state, read_state_dict, select_prefix

from .crops import CROP_RATIO, STRIDE_RATIO, Region, cut_views, sample_training_regions, view_regions
from .fusion import FusedMasks, fuse_views
from .model import VIEW_CODES, CropFormerModel, CropFormerModelConfig

PIXEL_MEAN = (123.675, 116.28, 103.53)  # ImageNet, 0..255
PIXEL_STD = (58.395, 57.12, 57.375)
SIZE_DIVISIBILITY = 32


def resized_input_size(height: int, width: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge: short side → ``short_side``, long side capped at
    ``max_long_side``; ``short_side <= 0`` keeps the original size."""
    if short_side <= 0:
        return height, width
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_long_side > 0:
        scale = max_long_side / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _model_config(config: object, batch_level: bool) -> CropFormerModelConfig:
    """The network's part of a segmenter config (a key the segmenter lacks keeps the network's default)."""
    values = {f.name: getattr(config, f.name, f.default) for f in fields(CropFormerModelConfig)}
    return CropFormerModelConfig(**{**values, "batch_level": batch_level})


def load_checkpoint(model: nn.Module, path: str, optional: Iterable[str] = ()) -> None:
    """Load a weights file of the network (``model.`` prefixes, as a trainer wrapping the network
    writes them, are accepted). Keys in ``optional`` may be missing from the file (they keep their
    values). Raises CheckpointError naming missing/unexpected keys."""
    state = read_state_dict(path, "CropFormer checkpoint")
    if state and all(k.startswith("model.") for k in state):
        state = select_prefix(state, "model.", str(path))
    load_state(model, state, f"checkpoint {path} for {type(model).__name__} built from this config",
               "check that the config (backbone, hidden_dim, num_queries, decoder_layers …) matches the one "
               "the checkpoint was trained with", optional=optional)


def check_config(config: object) -> None:
    """The mask and score thresholds lie in [0, 1) and the view code is known (a ConfigError naming the
    key otherwise)."""
    for key in ("threshold", "score_threshold"):
        if not 0.0 <= getattr(config, key) < 1.0:
            raise ConfigError(f"must lie in [0, 1), got {getattr(config, key)}", key=f"segmenter.{key}")
    code = getattr(config, "view_code", VIEW_CODES[0])
    if code not in VIEW_CODES:
        raise ConfigError(f"unknown view code {code!r}; choose one of {', '.join(VIEW_CODES)}",
                          key="segmenter.view_code")


class CropFormerSegmenter(nn.Module, Segmenter):
    """CropFormer: full image + 4 high-resolution corner crops, fused at original resolution."""

    batch_level: ClassVar[bool] = True

    @dataclass
    class Config:
        backbone: str = "test_resnet"  # timm model with stride 4..32 features, d2_swin_* or d2_hornet_* (random init)
        hidden_dim: int = 32
        num_queries: int = 10
        num_heads: int = 4
        dim_feedforward: int = 64
        decoder_layers: int = 3
        pixel_decoder_layers: int = 1
        pixel_decoder_feedforward: int = 0  # 0 = dim_feedforward; the official release: 1024
        view_code: str = "corner"  # the 3D encoding's view coordinate: corner | order (the release's)
        official_association: bool = False  # the release's association positions (official.py)
        short_side: int = 256  # paper: 800; 0 = original resolution
        max_long_side: int = 448  # paper: 1333
        crops: bool = True
        crop_ratio: float = CROP_RATIO
        stride_ratio: float = STRIDE_RATIO
        threshold: float = 0.5
        score_threshold: float = 0.0  # queries with a lower entity score paint no pixel (the paper's entityness threshold)
        chunk_queries: int = 8
        checkpoint: str = ""  # local .safetensors of the network; empty = random weights
        device: str = "cpu"

    def __init__(self, config: CropFormerSegmenter.Config) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        self.model = CropFormerModel(_model_config(config, self.batch_level))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: CropFormerSegmenter.Config) -> CropFormerSegmenter:
        segmenter = cls(config)
        if config.checkpoint:
            load_checkpoint(segmenter.model, config.checkpoint)
        segmenter.to(config.device).eval()
        return segmenter

    # ------------------------------------------------------------------ views
    @property
    def uses_crops(self) -> bool:
        return bool(getattr(self.config, "crops", False))

    def regions(self, height: int, width: int, training: bool = False,
                generator: torch.Generator | None = None) -> list[Region]:
        """The views of an image: full only, full + 4 crops (test), or full + 1 random crop (training)."""
        if not self.uses_crops:
            return view_regions(height, width, crops=False)
        ratios = {"crop_ratio": self.config.crop_ratio, "stride_ratio": self.config.stride_ratio}
        if training:
            return sample_training_regions(height, width, generator, **ratios)
        return view_regions(height, width, crops=True, **ratios)

    def prepare_views(self, image: np.ndarray | Tensor, regions: list[Region]) -> tuple[Tensor, tuple[int, int]]:
        """Cut, resize to the full view's input size, normalise and pad to a multiple of 32.
        Returns views (T, 3, H_pad, W_pad) and the unpadded input size."""
        height, width = (image.shape[:2] if isinstance(image, np.ndarray) else image.shape[-2:])
        size = resized_input_size(height, width, self.config.short_side, self.config.max_long_side)
        views = cut_views(image, regions, size).to(self.pixel_mean.device)
        views = (views - self.pixel_mean) / self.pixel_std
        pad_h = -size[0] % SIZE_DIVISIBILITY
        pad_w = -size[1] % SIZE_DIVISIBILITY
        return F.pad(views, (0, pad_w, 0, pad_h)), size

    def prepare_targets(self, masks: np.ndarray | Tensor, regions: list[Region], size: tuple[int, int],
                        padded: tuple[int, int]) -> Tensor:
        """Ground-truth masks (N, H, W) → per-view targets (N, T, H_pad, W_pad), cut like the views
        (nearest resize, zero padding). An entity outside a view is all zero there."""
        tensor = torch.as_tensor(np.asarray(masks) if isinstance(masks, np.ndarray) else masks)
        if tensor.shape[0] == 0:
            return torch.zeros(0, len(regions), *padded)
        views = cut_views(tensor.float(), regions, size, mode="nearest")  # (T, N, h, w)
        views = F.pad(views, (0, padded[1] - size[1], 0, padded[0] - size[0]))
        return views.transpose(0, 1).contiguous()

    def training_sample(self, image: np.ndarray, masks: np.ndarray,
                        generator: torch.Generator | None = None) -> dict[str, object]:
        """One training example: views (full + one random crop for CropFormer, full only for
        Mask2Former) (T, 3, H_pad, W_pad), targets (N, T, H_pad, W_pad) and the regions."""
        regions = self.regions(*image.shape[:2], training=True, generator=generator)
        views, size = self.prepare_views(image, regions)
        targets = self.prepare_targets(masks, regions, size, tuple(views.shape[-2:]))
        return {"views": views, "targets": targets, "regions": regions}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, image: np.ndarray) -> tuple[Tensor, Tensor, list[Region], tuple[int, int], tuple[int, int]]:
        """Network outputs for fusion: mask logits (T, Q, h, w), entity scores (Q,), regions,
        input size and padded size."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"{type(self).__name__} needs an RGB image (H, W, 3); got shape {image.shape}")
        regions = self.regions(*image.shape[:2])
        views, size = self.prepare_views(image, regions)
        out = self.model(views[None])
        if self.batch_level:
            final = out["batch"][-1]
            logits, masks = final["logits"][0], final["masks"][0].transpose(0, 1)  # (T, Q, h, w)
        else:
            final = out["image"][-1]
            logits, masks = final["logits"][0, 0], final["masks"][0]
        scores = logits.softmax(-1)[:, 0]
        return masks, scores, regions, size, tuple(views.shape[-2:])

    def fuse(self, image: np.ndarray) -> FusedMasks:
        """The non-overlapping result as a label map + scores (``FusedMasks``): 4 bytes per pixel
        whatever the number of entities. For very large images prefer this to ``segment``, whose
        dense EntityMasks take N·H·W bytes (100 entities at 8192² = 6.7 GB), and walk the entities
        one at a time with ``FusedMasks.iter_masks()``."""
        was_training = self.training
        self.eval()
        try:
            masks, scores, regions, size, padded = self.predict(np.asarray(image))
        finally:
            self.train(was_training)
        return fuse_views(masks, scores, regions, size, image.shape[:2], padded_size=padded,
                          threshold=self.config.threshold, score_threshold=self.config.score_threshold,
                          chunk_queries=self.config.chunk_queries)

    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        return self.fuse(image).to_entity_masks()


class Mask2FormerSegmenter(CropFormerSegmenter):
    """Mask2Former baseline: CropFormer's code path on the full image only (one view, no batch level).
    A Hugging Face Mask2Former folder as ``checkpoint`` runs that published model instead
    (``hf_mask2former``)."""

    batch_level: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: Mask2FormerSegmenter.Config) -> Segmenter:  # type: ignore[override]
        from .hf_mask2former import HuggingFaceMask2Former, is_hf_folder

        if is_hf_folder(config.checkpoint):
            check_config(config)
            return HuggingFaceMask2Former(config, config.checkpoint)
        return super().from_config(config)

    @dataclass
    class Config:
        backbone: str = "test_resnet"
        hidden_dim: int = 32
        num_queries: int = 10
        num_heads: int = 4
        dim_feedforward: int = 64
        decoder_layers: int = 3
        pixel_decoder_layers: int = 1
        pixel_decoder_feedforward: int = 0
        short_side: int = 256  # paper: 800; 0 = original resolution (the high-resolution baseline)
        max_long_side: int = 448
        threshold: float = 0.5
        score_threshold: float = 0.0
        chunk_queries: int = 8
        checkpoint: str = ""  # esgkit's .safetensors, or a Hugging Face Mask2Former folder (its config.json rules)
        device: str = "cpu"
