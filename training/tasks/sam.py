"""Training the tiny SAM on ShapesWorld with point prompts, as the SAM paper trains its decoder.

No SAM weights exist here, so the ``sam`` segmenter's ``tiny`` architecture (segment-anything's own
``Sam`` class: ViT image encoder, prompt encoder, two-way-transformer mask decoder) is trained from
scratch for the SAM-vs-CropFormer ablation. Per image, ``prompts_per_image`` ground-truth entities are
drawn and one positive point is drawn uniformly inside each (in ``collate``, from torch's RNG, which the
trainer checkpoints, so ``--resume`` is exact). A single point is ambiguous, so the decoder gives its
three multimask outputs and, as in the SAM paper (Kirillov et al. 2023, §3 and appendix A):

    mask loss   = min over the 3 outputs of [focal_weight · focal + dice_weight · Dice]   (20 : 1)
    iou loss    = iou_weight · MSE(predicted IoU, IoU of the thresholded mask with the entity)

The mask loss back-propagates through the best output only; the IoU head is supervised on all three
outputs (the automatic mask generator filters every output by its predicted IoU). Logits are
upsampled to the padded input size (``img_size``) before the losses. Images are resized with
segment-anything's ``ResizeLongestSide`` and normalised as ``Sam.preprocess`` does; each image is
prepared once and cached (the input is only img_size², small).

Checkpoints hold the ``Sam`` module's state dict with the official key names (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``), so ``segmenter.checkpoint`` of a ``sam`` config with
``model_type: tiny`` loads them directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.components.segmenters.sam import SamSegmenter, build_sam
from esgkit.core.errors import ConfigError
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..data import PreparedSplit
from .segmenters import SegmenterTask, open_entity_split, segmenter_parts

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)  # Sam's defaults
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


@dataclass
class SamTrainConfig:
    """Tiny-SAM keys of the ``train:`` section (besides the generic TrainConfig's)."""

    split: str = "train"
    max_images: int = 0
    prompts_per_image: int = 8     # entities (one point each) per image and step
    focal_weight: float = 20.0     # SAM paper: focal : dice = 20 : 1
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    min_area: int = 4              # entities smaller than this (in the resized input) are not prompted
    val_split: str = ""            # APe on this split at eval_every steps and at the end ("" = none)
    val_images: int = 4
    val_points_per_side: int = 16  # the automatic generator's grid during evaluation


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Per-mask mean focal loss (RetinaNet's), logits and targets (..., H, W) → (...)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-mask Dice loss 1 − (2|p·t| + 1)/(|p| + |t| + 1), (..., H, W) → (...)."""
    prob = logits.sigmoid().flatten(-2)
    t = targets.flatten(-2)
    return 1 - (2 * (prob * t).sum(-1) + 1) / (prob.sum(-1) + t.sum(-1) + 1)


def mask_iou(logits: Tensor, targets: Tensor) -> Tensor:
    """IoU of (logits > 0) with the targets, per mask; an empty union counts as IoU 1."""
    pred = (logits > 0).flatten(-2)
    t = targets.flatten(-2) > 0.5
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class PromptSamples(PreparedSplit):
    """An EntitySeg-style split prepared for SAM: the normalised, padded input (3, S, S) and the
    entity masks at that size, bool (N, S, S), of every image. Prepared on first use and cached."""

    def __init__(self, img_size: int, data_dir: str | Path, split: str, max_images: int = 0) -> None:
        self.img_size = img_size
        self.transform = ResizeLongestSide(img_size)
        super().__init__(open_entity_split(data_dir, split), max_images)

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        s = self.img_size
        resized = self.transform.apply_image(np.asarray(sample["image"]))
        h, w = resized.shape[:2]
        image = (torch.from_numpy(resized).permute(2, 0, 1).float() - PIXEL_MEAN) / PIXEL_STD
        image = F.pad(image, (0, s - w, 0, s - h))
        masks = torch.from_numpy(sample["masks"].masks)
        targets = torch.zeros(len(masks), s, s, dtype=torch.bool)
        for n0 in range(0, len(masks), 8):
            chunk = F.interpolate(masks[n0 : n0 + 8, None].float(), size=(h, w), mode="nearest")[:, 0]
            targets[n0 : n0 + 8, :h, :w] = chunk > 0.5
        return {"image": image, "targets": targets}


class SamTask(SegmenterTask):
    """Trains the config's ``sam`` segmenter (the tiny SAM) with point prompts."""

    Config = SamTrainConfig
    weights_name = "sam"
    loss_keys = ("loss", "mask", "iou")

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: SamTrainConfig | None = None) -> None:
        self.pipeline_config = pipeline_config
        self.data_dir = Path(data_dir)
        self.name, _, self.segmenter_config = segmenter_parts(pipeline_config)
        if self.segmenter_config.model_type != "tiny":
            raise ConfigError(f"only the tiny SAM is trained here (got model_type {self.segmenter_config.model_type!r}); "
                              "the official vit_b/l/h are loaded from their released checkpoints",
                              key="segmenter.model_type")
        self.task_config = settings or SamTrainConfig()

    def build_model(self) -> nn.Module:
        """A randomly initialised tiny ``Sam`` (its state dict has the official key names)."""
        return build_sam("tiny")

    def train_dataset(self) -> Sequence[Any]:
        c = self.task_config
        return PromptSamples(build_sam("tiny").image_encoder.img_size, self.data_dir, c.split, c.max_images)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Draw the prompted entities and one point inside each."""
        c = self.task_config
        images, points, targets = [], [], []
        for s in samples:
            masks = s["targets"]
            area = masks.flatten(1).sum(1)
            candidates = torch.nonzero(area >= c.min_area).flatten()
            chosen = candidates[torch.randperm(len(candidates))[: c.prompts_per_image]]
            pts = []
            for n in chosen.tolist():
                ys, xs = torch.nonzero(masks[n], as_tuple=True)
                k = int(torch.randint(len(ys), (1,)))
                pts.append([float(xs[k]), float(ys[k])])
            images.append(s["image"])
            points.append(torch.tensor(pts, dtype=torch.float32).view(-1, 2))
            targets.append(masks[chosen])
        return {"images": torch.stack(images), "points": points, "targets": targets}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        sam: Sam = model
        c = self.task_config
        size = batch["images"].shape[-2:]
        embeddings = sam.image_encoder(batch["images"])
        mask_terms, iou_terms = [], []
        for b, (pts, target) in enumerate(zip(batch["points"], batch["targets"])):
            if len(pts) == 0:
                continue
            labels = torch.ones(len(pts), 1, device=pts.device)
            sparse, dense = sam.prompt_encoder(points=(pts[:, None], labels), boxes=None, masks=None)
            low_res, iou_pred = sam.mask_decoder(
                image_embeddings=embeddings[b : b + 1], image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
            logits = F.interpolate(low_res, size=size, mode="bilinear", align_corners=False)  # (K, 3, S, S)
            t = target[:, None].float().expand_as(logits)
            per_output = c.focal_weight * sigmoid_focal_loss(logits, t) + c.dice_weight * dice_per_mask(logits, t)
            mask_terms.append(per_output.min(1).values)  # only the best of the 3 outputs learns
            iou_terms.append(((iou_pred - mask_iou(logits.detach(), t)) ** 2).mean(1))
        if not mask_terms:  # no entity in the whole batch
            zero = embeddings.sum() * 0.0
            return {"mask": zero, "iou": zero}
        return {"mask": torch.cat(mask_terms).mean(), "iou": c.iou_weight * torch.cat(iou_terms).mean()}

    def validation_segmenter(self, model: nn.Module) -> SamSegmenter:
        """The automatic mask generator around the trained SAM, on a ``val_points_per_side`` grid."""
        config = SamSegmenter.Config(**{**asdict(self.segmenter_config), "checkpoint": "",
                                        "points_per_side": self.task_config.val_points_per_side})
        segmenter = SamSegmenter(config)
        segmenter.sam = model
        return segmenter


__all__ = ["PromptSamples", "SamTask", "SamTrainConfig", "dice_per_mask", "mask_iou", "sigmoid_focal_loss"]
