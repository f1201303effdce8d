"""Training a referring pipeline's text encoder and referrer on ShapesWorld's RefCOCO-style refs.
Two objectives, one per kind of referrer output:

``referring`` — PBREC-MT's comprehension stage with the paper's soft targets (seed 003):

    center-ness (eq. 2)  c_k = sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b)) at the cells whose centre
                         lies in the box and in the ``referrer.center_window``·g square around its
                         centre, divided by its maximum;
    mass-ness (eq. 4)    m_k = the share of cell k the mask covers, at the cells within
                         ``referrer.mass_radius``·g of the mask's centroid (the seed's radius 2g);
    loss (eq. 6)         λ_c · BCE(ĉ, c) + λ_m · BCE(m̂, m), averaged over the cells (``pos_weight`` > 1
                         weighs the target term up: not the paper, for short CPU schedules).

``center_targets`` / ``mass_targets: hard`` set 1 on the same positive cells (paper Table 4);
``lambda_center`` / ``lambda_mass`` = 0 trains a single-task PBREC.

``referring_masks`` — one-stage referring segmenters (CMPC, seed 002): the referrer's ``final`` mask
logits and each of its ``levels``' auxiliary logits, upsampled to the input square, against the
referred mask placed there (its area share per pixel): ``final_weight``·BCE(final) +
``level_weight``·Σ BCE(level) (CMPC: 0.7 and 0.1); ``dice_weight`` > 0 adds a Dice loss to each term
(not the paper; for small referred shapes).

``referring_joint`` — joint box + mask referrers (UniQRNet, seed 001): L_box = ``l1_weight``·L1 +
``giou_weight``·(1 − GIoU) on the [REG] box (QRNet: 1 and 1); L_mask = BCE (+ ``dice_weight``·Dice) of
the mask logits + ``stage_weight``·Σ the same on each backbone stage's intermediate logits; the two
balanced by the referrer's ``loss_balance`` (learned log-variances, or ``box_weight`` / ``mask_weight``).

Each image is prepared once (input tensor, every ref's targets); each step draws one of an image's
expressions from torch's RNG (checkpointed: ``--resume`` is exact). A pretrained text encoder (the
shipped MiniLM) stays frozen unless ``train_text_encoder``; one without weights of its own (``hashed``,
``lstm``) is always trained.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.core import get_registry
from esgkit.core.errors import ConfigError, InputError
from esgkit.core.schema import to_container
from esgkit.layers.geometry import mask_boxes, resize_pad
from esgkit.pipelines.referring.pipeline import ReferringModel, ReferringPipeline

from ..data import PreparedSplit
from ..losses import dice_loss
from ..trainer import TrainingTask
from .segmenters import section

TARGETS = ("soft", "hard")


@dataclass
class ReferringSettings:
    """Keys of the ``train:`` section every referring objective has (besides the generic TrainConfig's)."""

    split: str = "train"
    max_images: int = 0
    train_text_encoder: bool = False  # fine-tune a pretrained text encoder too (it is then saved)
    val_split: str = ""             # REC/RES on this split at eval_every steps and at the end ("" = none)
    val_images: int = 50


@dataclass
class ReferringTrainConfig(ReferringSettings):
    """``train:`` keys of the ``referring`` task (PBREC-MT's point targets)."""

    lambda_center: float = 1.0      # eq. 6 λ_c (0: single-task segmentation)
    lambda_mass: float = 1.0        # eq. 6 λ_m (0: single-task grounding)
    center_targets: str = "soft"    # soft (eq. 2) | hard (1 on the same positive cells): paper Table 4
    mass_targets: str = "soft"      # soft (eq. 4) | hard
    pos_weight: float = 1.0         # BCE weight of the target term (paper: 1; >1 offsets the few positive cells)


@dataclass
class ReferringMaskTrainConfig(ReferringSettings):
    """``train:`` keys of the ``referring_masks`` task (dense mask logits, CMPC)."""

    final_weight: float = 0.7       # BCE of the final mask logits (CMPC: 0.7)
    level_weight: float = 0.1       # BCE of each level's auxiliary logits (CMPC: 0.1; 0 = none)
    dice_weight: float = 0.0        # + this × Dice loss in each term (not the paper: ShapesWorld's referred
                                    # shapes cover ~1% of the image and BCE alone learns empty masks)


@dataclass
class ReferringJointTrainConfig(ReferringSettings):
    """``train:`` keys of the ``referring_joint`` task (a box and mask logits, UniQRNet)."""

    l1_weight: float = 1.0          # QRNet: L1 (summed over cx, cy, w, h) + GIoU, 1 each
    giou_weight: float = 1.0
    dice_weight: float = 1.0        # + Dice in each mask term (as referring_masks)
    stage_weight: float = 0.1       # each backbone stage's intermediate mask term (intermediate_supervision)
    box_weight: float = 1.0         # loss_balance: fixed — the weights of the box and mask losses
    mask_weight: float = 1.0


def mask_loss(logits: Tensor, target: Tensor, dice_weight: float) -> Tensor:
    """BCE (+ ``dice_weight``·Dice) of (B, h, w) mask logits, upsampled to the (B, S, S) target."""
    up = F.interpolate(logits[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    loss = F.binary_cross_entropy_with_logits(up, target)
    return loss + dice_weight * dice_loss(up.flatten(1), target.flatten(1), len(up)) if dice_weight else loss


def square_masks(masks: Any, size: int) -> Tensor:
    """bool (N, H, W) masks → their area share per pixel of the input square, uint8 (0..255) to save memory."""
    square, _ = resize_pad(torch.from_numpy(masks).float(), size, mode="area")
    return (square.clamp(0, 1) * 255).round().to(torch.uint8)


class ReferringSamples(PreparedSplit):
    """A ShapesWorld split prepared for a referrer: its input (3, S, S) and size, and per expression
    its text and the targets ``targets(image size, referred masks (N, H, W))`` makes (a dict of
    (N, ...) tensors, plus any per-image entry)."""

    def __init__(self, referrer: Any, targets: Any, config: ReferringSettings, data_dir: str | Path, split: str) -> None:
        self.referrer, self.targets = referrer, targets
        dataset = get_registry().build("dataset", {"name": "shapesworld", "root": str(data_dir), "split": split},
                                       key="dataset")
        super().__init__(dataset, config.max_images)

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        image, valid_size = self.referrer.preprocess(sample["image"])
        by_id = {int(i): k for k, i in enumerate(sample["masks"].ids)}
        texts = [ref["sent"] for ref in sample["refs"]]
        masks = sample["masks"].masks[[by_id[int(ref["segment_id"])] for ref in sample["refs"]]]
        return {"image": image, "texts": texts, **self.targets(valid_size, masks)}


class ReferringTaskBase(TrainingTask):
    """What the referring objectives share: the model (text encoder, frozen when pretrained, and
    referrer), the prepared split, one expression per image per step, REC/RES validation. A subclass
    names its per-expression targets (``target_keys``), per-image entries (``image_keys``), makes
    them (``targets``) and scores the referrer's output (``losses``)."""

    Config: type[ReferringSettings] = ReferringSettings
    weights_name = "referring"
    target_keys: tuple[str, ...] = ()
    image_keys: tuple[str, ...] = ()

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: ReferringSettings | None = None) -> None:
        self.pipeline_config = pipeline_config
        self.data_dir = Path(data_dir)
        self.task_config: Any = settings or self.Config()
        self._val: Any = None
        self.referrer: Any = None  # the referrer the targets are made for (set by train_dataset)

    def _component(self, kind: str) -> Any:
        return get_registry().build(kind, section(self.pipeline_config, kind), key=kind)

    def build_model(self) -> nn.Module:
        text, referrer = self._component("text_encoder"), self._component("referrer")
        referrer.configure(text.embed_dim)
        return ReferringModel(text, referrer, train_text=self.task_config.train_text_encoder or not text.pretrained)

    def targets(self, size: tuple[int, int], masks: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def train_dataset(self) -> Sequence[Any]:
        self.referrer = self._component("referrer")
        return ReferringSamples(self.referrer, self.targets, self.task_config, self.data_dir, self.task_config.split)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """One expression per image, drawn with torch's RNG; images without expressions are skipped."""
        keep = [s for s in samples if s["texts"]]
        if not keep:
            raise InputError(f"a training batch of {len(samples)} images holds no referring expression; check the "
                             f"refs of split {self.task_config.split!r} in {self.data_dir}")
        picks = [int(torch.randint(len(s["texts"]), (1,))) for s in keep]
        batch = {"images": torch.stack([s["image"] for s in keep]),
                 **{key: torch.stack([s[key] for s in keep]) for key in self.image_keys},
                 "texts": [s["texts"][k] for s, k in zip(keep, picks)]}
        return batch | {key: torch.stack([s[key][k] for s, k in zip(keep, picks)]) for key in self.target_keys}

    def config_dict(self) -> dict[str, Any]:
        return {"pipeline": to_container(self.pipeline_config), "task": dataclasses.asdict(self.task_config)}

    def evaluate(self, model: nn.Module, step: int) -> Mapping[str, float] | None:
        """REC Acc@0.5 and RES cIoU / gIoU on ``val_split`` (ground-truth entities as proposals for a
        referrer that ranks them)."""
        from esgkit.evaluation.run import score_predictions

        c = self.task_config
        if not c.val_split:
            return None
        if self._val is None:
            self._val = get_registry().build(
                "dataset", {"name": "shapesworld", "root": str(self.data_dir), "split": c.val_split}, key="dataset")
        segmenter = get_registry().build("segmenter", {"name": "ground_truth"}, key="segmenter")
        config = ReferringPipeline.Config(proposals=bool(model.referrer.needs_proposals))  # type: ignore[union-attr]
        pipeline = ReferringPipeline.wrap(config, segmenter, model)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as tmp:
            metrics = score_predictions(pipeline.predict(self._val, tmp, max_images=c.val_images, progress=False))
        return {k: v for k, v in metrics.items() if k in ("Acc@0.5", "cIoU", "gIoU")}


class ReferringTask(ReferringTaskBase):
    """PBREC-MT's comprehension stage: center-ness / mass-ness targets on the referrer's grid."""

    Config = ReferringTrainConfig
    loss_keys = ("loss", "center", "mass")
    target_keys = ("center", "mass")
    image_keys = ("valid",)

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: ReferringTrainConfig | None = None) -> None:
        super().__init__(pipeline_config, data_dir, settings)
        c = self.task_config
        for key in ("center_targets", "mass_targets"):
            if getattr(c, key) not in TARGETS:
                raise ConfigError(f"{key} {getattr(c, key)!r}: expected soft or hard", key=f"train.{key}")
        if c.pos_weight <= 0:
            raise ConfigError(f"pos_weight {c.pos_weight} must be > 0", key="train.pos_weight")
        if c.lambda_center < 0 or c.lambda_mass < 0 or c.lambda_center + c.lambda_mass == 0:
            raise ConfigError(f"lambda_center {c.lambda_center} and lambda_mass {c.lambda_mass} must be ≥ 0 and not "
                              "both 0", key="train.lambda_center")

    def targets(self, size: tuple[int, int], masks: Any) -> dict[str, Tensor]:
        c, r = self.task_config, self.referrer
        maps = r.target_maps(masks, c.center_targets == "soft", c.mass_targets == "soft")
        return {"valid": r.valid_cells([size])[0], **maps}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        c = self.task_config
        logits = model.referrer(batch["images"], model.encode(batch["texts"]), batch["valid"])
        out = {}
        pos_weight = torch.tensor(c.pos_weight, device=batch["images"].device)
        for name, weight in (("center", c.lambda_center), ("mass", c.lambda_mass)):
            if weight > 0:
                out[name] = weight * F.binary_cross_entropy_with_logits(logits[name], batch[name], pos_weight=pos_weight)
        return out


class ReferringMaskTask(ReferringTaskBase):
    """One-stage referring segmentation (CMPC): the referrer's ``final`` and ``levels`` mask logits
    against the referred mask on the input square."""

    Config = ReferringMaskTrainConfig
    loss_keys = ("loss", "final", "levels")
    target_keys = ("mask",)

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: ReferringMaskTrainConfig | None = None) -> None:
        super().__init__(pipeline_config, data_dir, settings)
        c = self.task_config
        if c.final_weight <= 0 or c.level_weight < 0 or c.dice_weight < 0:
            raise ConfigError(f"final_weight {c.final_weight} must be > 0, level_weight {c.level_weight} and "
                              f"dice_weight {c.dice_weight} ≥ 0", key="train.final_weight")

    def targets(self, size: tuple[int, int], masks: Any) -> dict[str, Tensor]:
        return {"mask": square_masks(masks, self.referrer.config.image_size)}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        c = self.task_config
        out = model.referrer(batch["images"], model.encode(batch["texts"]))
        target = batch["mask"].float() / 255
        losses = {"final": c.final_weight * mask_loss(out["final"], target, c.dice_weight)}
        if c.level_weight > 0:
            losses["levels"] = c.level_weight * torch.stack([mask_loss(lv, target, c.dice_weight)
                                                             for lv in out["levels"]]).sum()
        return losses


class ReferringJointTask(ReferringTaskBase):
    """Joint referring comprehension and segmentation (UniQRNet): the referrer's [REG] box against the
    referred mask's box, its mask logits (and intermediate stage logits) against the mask, the two
    losses balanced by the referrer (``loss_balance``)."""

    Config = ReferringJointTrainConfig
    loss_keys = ("loss", "box", "mask")
    target_keys = ("mask", "box")
    image_keys = ("valid",)

    def __init__(self, pipeline_config: Any, data_dir: str | Path,
                 settings: ReferringJointTrainConfig | None = None) -> None:
        super().__init__(pipeline_config, data_dir, settings)
        c = self.task_config
        weights = {k: getattr(c, k) for k in ("l1_weight", "giou_weight", "dice_weight", "stage_weight", "box_weight",
                                              "mask_weight")}
        if any(v < 0 for v in weights.values()) or c.l1_weight + c.giou_weight == 0:
            raise ConfigError(f"the loss weights {weights} must be ≥ 0, l1_weight + giou_weight > 0",
                              key="train.l1_weight")

    def targets(self, size: tuple[int, int], masks: Any) -> dict[str, Tensor]:
        """The masks on the input square and their boxes as (cx, cy, w, h) in [0, 1] of the square."""
        side = self.referrer.config.image_size
        scale = side / max(masks.shape[1:])
        x, y, w, h = torch.from_numpy(mask_boxes(masks)).float().unbind(1)
        box = torch.stack([x + w / 2, y + h / 2, w, h], 1) * scale / side
        return {"mask": square_masks(masks, side), "box": box, "valid": self.referrer.valid_tokens([size])[0]}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        from torchvision.ops import box_convert, generalized_box_iou_loss

        c = self.task_config
        referrer = model.referrer
        out = referrer(batch["images"], model.encode(batch["texts"]), batch["valid"])
        target = batch["mask"].float() / 255
        losses: dict[str, Tensor] = {}
        if out["box"] is not None:
            pred, true = (box_convert(b, "cxcywh", "xyxy") for b in (out["box"], batch["box"]))
            # L1 summed over (cx, cy, w, h) and averaged over the boxes, as QRNet's (TransVG's) loss: a mean over
            # the four coordinates weighs it 4× less against GIoU, and the boxes then grow to hedge their centre
            losses["box"] = (c.l1_weight * (out["box"] - batch["box"]).abs().sum(1).mean()
                             + c.giou_weight * generalized_box_iou_loss(pred, true, reduction="mean"))
        terms = ([mask_loss(out["mask"], target, c.dice_weight)] if out["mask"] is not None else []) + \
            [c.stage_weight * mask_loss(s, target, c.dice_weight) for s in out["stages"]]
        if terms:
            losses["mask"] = torch.stack(terms).sum()
        return referrer.balance(losses, {"box": c.box_weight, "mask": c.mask_weight})


__all__ = ["ReferringJointTask", "ReferringJointTrainConfig", "ReferringMaskTask", "ReferringMaskTrainConfig",
           "ReferringSamples", "ReferringSettings", "ReferringTask", "ReferringTaskBase", "ReferringTrainConfig"]
