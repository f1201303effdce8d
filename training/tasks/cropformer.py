"""Training CropFormer and its Mask2Former baseline (ESG paper §4.1) with esgkit's generic Trainer.

Loss (reference CropFormer; ESG_FACTS "Matching/loss")::

    total = image_level_weight · Σ_views L_image(view) + L_batch          (CropFormer)
    total = L_image(full view)                                            (Mask2Former)

each L a Mask2Former set loss — entityness cross-entropy (no-object weight 0.1) + mask BCE + Dice on
importance-sampled points — with its own Hungarian matching on every one of the
1 + L decoder predictions (deep supervision). The image level matches each view alone against the
entities present in that view; the batch level matches once jointly across views (a query's masks
in all views against an entity's masks in all views, all-zero where it is absent). Logged terms:
``image_class``, ``image_mask``, ``image_dice`` (already × image_level_weight) and ``batch_*``.

Data: a training sample is the full view plus **one** corner crop drawn at random (CropFormer), or
the full view only (Mask2Former), with a random horizontal flip shared by both views. With
``train.window: S`` (Mask2Former only) a sample is instead a random S×S window of the network's input
(Mask2Former's fixed-size crop): the way a network that runs at the original resolution
(``segmenter.short_side: 0``) trains at that resolution, which whole 2048² views would make too costly. The crop keeps
its test-time view index (1 + its corner: TL 1, TR 2, BL 3, BR 4; a flipped crop becomes the mirrored
corner) for the batch level's 3D positional encoding, so training sees every encoding the four crops
get at test instead of only index 1. Each image's
views and per-view targets are prepared once (all four crops, resized to the network input with the
segmenter's own preprocessing) and kept in memory as uint8, so a 2048² image costs a few hundred KB;
the crop and the flip are drawn in ``collate`` from torch's RNG, which the trainer checkpoints, so
``--resume`` is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.components.segmenters.cropformer.crops import Region, cut_views
from esgkit.components.segmenters.cropformer.segmenter import (
    SIZE_DIVISIBILITY, CropFormerSegmenter, load_checkpoint, resized_input_size,
)

from esgkit.core.errors import ConfigError

from ..criterion import SetCriterion, SetCriterionConfig
from ..data import PreparedSplit
from .segmenters import SegmenterTask, open_entity_split, segmenter_parts


@dataclass
class CropFormerTrainConfig:
    """CropFormer/Mask2Former keys of the ``train:`` section (besides the generic TrainConfig's)."""

    split: str = "train"          # the split of --data to train on
    max_images: int = 0           # 0 = the whole split
    num_points: int = 2048        # points per view for the mask losses and matching (paper: 12544)
    # The defaults are the paper's eq. 7 (every term weight 1); the reference code's — and Mask2Former's —
    # are image level 0.5, class 2, mask 5, Dice 5, which the shipped configs pin
    # (experiments/tables/esg_cropformer_loss.yaml measures the two).
    class_weight: float = 1.0
    mask_weight: float = 1.0
    dice_weight: float = 1.0
    no_object_weight: float = 0.1
    image_level_weight: float = 1.0  # CropFormer: this·Σ image-level + batch-level
    flip: bool = True             # random horizontal flip (shared by the full view and the crop)
    val_split: str = ""           # APe on this split at eval_every steps and at the end ("" = none)
    val_images: int = 8
    window: int = 0               # > 0: train on random window×window cuts of the input (Mask2Former only)
    init_weights: str = ""        # start from these network weights (a run's <segmenter>.safetensors) instead
                                  # of random: a Mask2Former's initialise CropFormer's shared parts


class EntityViews(PreparedSplit):
    """An EntitySeg-style split prepared for the network: per image every view (full + the four crops,
    or full only) resized to the input size, as uint8 (T, 3, h, w), and the entity masks cut the same
    way, bool (N, T, h, w). Prepared on first use and cached."""

    def __init__(self, segmenter: CropFormerSegmenter, data_dir: str | Path, split: str, max_images: int = 0,
                 window: int = 0) -> None:
        self.segmenter = segmenter
        self.window = window
        super().__init__(open_entity_split(data_dir, split), max_images)

    def prepare_whole(self, image: Any, masks: Any) -> dict[str, Any]:
        """Window mode: the full view at the input size (uint8 (3, h, w)) and the entities as one label
        map (−1 = none), which takes two bytes per pixel where N bool masks would take N. Entities are
        assumed not to overlap (EntitySeg's do not); where they do, the later one keeps the pixel."""
        seg = self.segmenter
        height, width = image.shape[:2]
        size = resized_input_size(height, width, seg.config.short_side, seg.config.max_long_side)
        full = [Region(0, 0, width, height)]
        view = cut_views(image, full, size)[0].round_().clamp_(0, 255).to(torch.uint8)
        masks = torch.from_numpy(masks)
        labels = torch.full(size, -1, dtype=torch.int16)
        for n in range(len(masks)):
            mask = cut_views(masks[n : n + 1], full, size, mode="nearest")[0, 0] > 0.5
            labels[mask] = n
        return {"view": view, "labels": labels, "entities": len(masks)}

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        seg = self.segmenter
        image = sample["image"]
        height, width = image.shape[:2]
        if self.window:
            return self.prepare_whole(image, sample["masks"].masks)
        regions = seg.regions(height, width)  # test-time views: full (+ all four crops)
        size = resized_input_size(height, width, seg.config.short_side, seg.config.max_long_side)
        views = cut_views(image, regions, size).round_().clamp_(0, 255).to(torch.uint8)
        masks = torch.from_numpy(sample["masks"].masks)
        targets = torch.zeros(len(masks), len(regions), *size, dtype=torch.bool)
        for n0 in range(0, len(masks), 8):  # a few entities at a time: float copies of 2048² masks are big
            cut = cut_views(masks[n0 : n0 + 8], regions, size, mode="nearest")  # (T, n, h, w)
            targets[n0 : n0 + 8] = cut.transpose(0, 1) > 0.5
        # the view each view becomes in the mirrored image (a flipped top-left crop is the top-right one)
        mirror = [next(j for j, m in enumerate(regions) if (m.x0, m.y0, m.x1, m.y1) == (width - r.x1, r.y0, width - r.x0, r.y1))
                  for r in regions]
        return {"views": views, "targets": targets, "mirror": torch.tensor(mirror)}


class CropFormerTask(SegmenterTask):
    """Trains the config's ``cropformer`` or ``mask2former`` segmenter on an EntitySeg-style split."""

    Config = CropFormerTrainConfig
    loss_keys = ("loss", "image_class", "image_mask", "image_dice", "batch_class", "batch_mask", "batch_dice")

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: CropFormerTrainConfig | None = None) -> None:
        self.pipeline_config = pipeline_config
        self.data_dir = Path(data_dir)
        self.name, self.segmenter_cls, self.segmenter_config = segmenter_parts(pipeline_config)
        if not issubclass(self.segmenter_cls, CropFormerSegmenter):
            raise TypeError(f"segmenter {self.name!r} is not a CropFormer/Mask2Former segmenter")
        self.weights_name = self.name  # RUN/<segmenter>.safetensors, what segmenter.checkpoint takes
        self.task_config = c = settings or CropFormerTrainConfig()
        self.criterion = SetCriterion(SetCriterionConfig(
            class_weight=c.class_weight, mask_weight=c.mask_weight, dice_weight=c.dice_weight,
            no_object_weight=c.no_object_weight, num_points=c.num_points))
        self._template = self.segmenter_cls(self.segmenter_config)  # preprocessing only (no weights used)
        if c.window and self._template.uses_crops:
            raise ConfigError("window training cuts one view: it is for mask2former (CropFormer's crops are views "
                              "of the whole image); set train.window=0 or segmenter.name=mask2former", key="train.window")
        if c.window < 0 or c.window % SIZE_DIVISIBILITY:
            raise ConfigError(f"must be 0 or a positive multiple of {SIZE_DIVISIBILITY}, got {c.window}", key="train.window")

    # ------------------------------------------------------------------ TrainingTask
    def build_model(self) -> nn.Module:
        """The segmenter, randomly initialised or from ``train.init_weights`` (``segmenter.checkpoint``
        is not read); its ``model.*`` weights are what checkpoints hold. Mask2Former weights lack only
        CropFormer's view association, which then keeps its random initialisation: the two-stage
        recipe (train the image level on full views, then add the crops and the batch level)."""
        segmenter = self.segmenter_cls(self.segmenter_config)
        if self.task_config.init_weights:
            association = [k for k in segmenter.model.state_dict() if k.startswith("association.")]
            load_checkpoint(segmenter.model, self.task_config.init_weights, optional=association)
        return segmenter

    def train_dataset(self) -> Sequence[Any]:
        c = self.task_config
        return EntityViews(self._template, self.data_dir, c.split, c.max_images, c.window)

    def cut_window(self, sample: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """A random window of a window-mode sample (zero-padded where the input is smaller): view
        (1, 3, S, S) uint8 and the targets of the entities inside it (n, 1, S, S) bool."""
        size = self.task_config.window
        view, labels = sample["view"], sample["labels"]
        h, w = labels.shape
        y0 = int(torch.randint(max(h - size, 0) + 1, (1,)))
        x0 = int(torch.randint(max(w - size, 0) + 1, (1,)))
        view, labels = view[:, y0 : y0 + size, x0 : x0 + size], labels[y0 : y0 + size, x0 : x0 + size]
        pad = (0, size - labels.shape[1], 0, size - labels.shape[0])
        view, labels = F.pad(view, pad), F.pad(labels, pad, value=-1)
        present = torch.unique(labels)
        present = present[present >= 0]
        return view[None], (labels[None] == present.view(-1, 1, 1))[:, None]

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Pick the training views (full + one random crop, or one random window), flip, normalise,
        pad to a multiple of 32."""
        seg = self._template
        views, targets, view_ids = [], [], []
        for s in samples:
            if self.task_config.window:
                v, t = self.cut_window(s)
                if self.task_config.flip and bool(torch.rand(()) < 0.5):
                    v, t = v.flip(-1), t.flip(-1)
                views.append(v)
                targets.append(t)
                view_ids.append([0])
                continue
            v, t = s["views"], s["targets"]
            ids = [0, 1 + int(torch.randint(v.shape[0] - 1, (1,)))] if seg.uses_crops else [0]
            v, t = v[ids], t[:, ids]
            if self.task_config.flip and bool(torch.rand(()) < 0.5):
                v, t = v.flip(-1), t.flip(-1)
                ids = [int(s["mirror"][i]) for i in ids]  # the flipped crop is the mirrored corner's view
            views.append(v)
            targets.append(t)
            view_ids.append(ids)
        h, w = views[0].shape[-2:]
        if any(v.shape[-2:] != (h, w) for v in views):
            raise ValueError("images of a batch must share their input size; use batch_size 1 for mixed sizes")
        pad = (0, -w % SIZE_DIVISIBILITY, 0, -h % SIZE_DIVISIBILITY)
        batch = (torch.stack(views).float() - seg.pixel_mean[None]) / seg.pixel_std[None]
        return {"views": F.pad(batch, pad), "targets": [F.pad(t, pad) for t in targets],
                "view_ids": torch.tensor(view_ids)}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        out = model.model(batch["views"], batch["view_ids"])
        targets: list[Tensor] = batch["targets"]
        image_weight = self.task_config.image_level_weight if model.batch_level else 1.0
        terms: dict[str, Tensor] = {}

        image = out["image"]
        for v in range(batch["views"].shape[1]):
            present = [t[:, v][t[:, v].flatten(1).any(1)] for t in targets]
            aux = [(o["logits"][:, v], o["masks"][:, v]) for o in image[:-1]]
            layer = self.criterion(image[-1]["logits"][:, v], image[-1]["masks"][:, v], present, aux)
            for k, value in layer.items():
                terms[f"image_{k}"] = terms.get(f"image_{k}", 0.0) + image_weight * value
        if model.batch_level:
            level = out["batch"]
            aux = [(o["logits"], o["masks"]) for o in level[:-1]]
            for k, value in self.criterion(level[-1]["logits"], level[-1]["masks"], targets, aux).items():
                terms[f"batch_{k}"] = value
        return terms


__all__ = ["CropFormerTask", "CropFormerTrainConfig", "EntityViews"]
