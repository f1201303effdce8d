"""Training a referring pipeline's text encoder and referrer on ShapesWorld's RefCOCO-style refs —
PBREC-MT's comprehension stage with the paper's soft targets (seed 003):

    center-ness (eq. 2)  c_k = sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b)) at the cells whose centre
                         lies in the box and in the ``referrer.center_window``·g square around its
                         centre, divided by its maximum;
    mass-ness (eq. 4)    m_k = the share of cell k the mask covers, at the cells within
                         ``referrer.mass_radius``·g of the mask's centroid (the seed's radius 2g);
    loss (eq. 6)         λ_c · BCE(ĉ, c) + λ_m · BCE(m̂, m), averaged over the cells (``pos_weight`` > 1
                         weighs the target term up: not the paper, for short CPU schedules).

``center_targets`` / ``mass_targets: hard`` set 1 on the same positive cells (paper Table 4);
``lambda_center`` / ``lambda_mass`` = 0 trains a single-task PBREC. Each image is prepared once
(input tensor, every ref's targets); each step draws one of an image's expressions from torch's RNG (checkpointed: ``--resume``
is exact). A pretrained text encoder (the shipped MiniLM) stays frozen unless ``train_text_encoder``;
one without weights of its own (``hashed``) is always trained.
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
from esgkit.pipelines.referring.pipeline import ReferringModel, ReferringPipeline

from ..data import PreparedSplit
from ..trainer import TrainingTask
from .segmenters import section

TARGETS = ("soft", "hard")


@dataclass
class ReferringTrainConfig:
    """Keys of the ``train:`` section for a referring pipeline (besides the generic TrainConfig's)."""

    split: str = "train"
    max_images: int = 0
    lambda_center: float = 1.0      # eq. 6 λ_c (0: single-task segmentation)
    lambda_mass: float = 1.0        # eq. 6 λ_m (0: single-task grounding)
    center_targets: str = "soft"    # soft (eq. 2) | hard (1 on the same positive cells): paper Table 4
    mass_targets: str = "soft"      # soft (eq. 4) | hard
    pos_weight: float = 1.0         # BCE weight of the target term (paper: 1; >1 offsets the few positive cells)
    train_text_encoder: bool = False  # fine-tune a pretrained text encoder too (it is then saved)
    val_split: str = ""             # REC/RES on this split at eval_every steps and at the end ("" = none)
    val_images: int = 50


class ReferringSamples(PreparedSplit):
    """A ShapesWorld split prepared for a grid referrer: the input (3, S, S), the valid-cell mask and,
    per expression, its text and (center, mass) targets."""

    def __init__(self, referrer: Any, config: ReferringTrainConfig, data_dir: str | Path, split: str) -> None:
        self.referrer, self.config = referrer, config
        dataset = get_registry().build("dataset", {"name": "shapesworld", "root": str(data_dir), "split": split},
                                       key="dataset")
        super().__init__(dataset, config.max_images)

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        r, c = self.referrer, self.config
        image, valid_size = r.preprocess(sample["image"])
        by_id = {int(i): k for k, i in enumerate(sample["masks"].ids)}
        texts = [ref["sent"] for ref in sample["refs"]]
        masks = sample["masks"].masks[[by_id[int(ref["segment_id"])] for ref in sample["refs"]]]
        maps = r.target_maps(masks, c.center_targets == "soft", c.mass_targets == "soft")
        return {"image": image, "valid": r.valid_cells([valid_size])[0], "texts": texts, **maps}


class ReferringTask(TrainingTask):
    """Trains the text encoder (unless pretrained and frozen) and the referrer of a referring config."""

    Config = ReferringTrainConfig
    weights_name = "referring"
    loss_keys = ("loss", "center", "mass")

    def __init__(self, pipeline_config: Any, data_dir: str | Path, settings: ReferringTrainConfig | None = None) -> None:
        self.pipeline_config = pipeline_config
        self.data_dir = Path(data_dir)
        self.task_config = c = settings or ReferringTrainConfig()
        for key in ("center_targets", "mass_targets"):
            if getattr(c, key) not in TARGETS:
                raise ConfigError(f"{key} {getattr(c, key)!r}: expected soft or hard", key=f"train.{key}")
        if c.pos_weight <= 0:
            raise ConfigError(f"pos_weight {c.pos_weight} must be > 0", key="train.pos_weight")
        if c.lambda_center < 0 or c.lambda_mass < 0 or c.lambda_center + c.lambda_mass == 0:
            raise ConfigError(f"lambda_center {c.lambda_center} and lambda_mass {c.lambda_mass} must be ≥ 0 and not "
                              "both 0", key="train.lambda_center")
        self._val: Any = None

    def _component(self, kind: str) -> Any:
        return get_registry().build(kind, section(self.pipeline_config, kind), key=kind)

    def build_model(self) -> nn.Module:
        text, referrer = self._component("text_encoder"), self._component("referrer")
        referrer.configure(text.embed_dim)
        return ReferringModel(text, referrer, train_text=self.task_config.train_text_encoder or not text.pretrained)

    def train_dataset(self) -> Sequence[Any]:
        referrer = self._component("referrer")
        return ReferringSamples(referrer, self.task_config, self.data_dir, self.task_config.split)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """One expression per image, drawn with torch's RNG; images without expressions are skipped."""
        keep = [s for s in samples if s["texts"]]
        if not keep:
            raise InputError(f"a training batch of {len(samples)} images holds no referring expression; check the "
                             f"refs of split {self.task_config.split!r} in {self.data_dir}")
        picks = [int(torch.randint(len(s["texts"]), (1,))) for s in keep]
        return {"images": torch.stack([s["image"] for s in keep]), "valid": torch.stack([s["valid"] for s in keep]),
                "texts": [s["texts"][k] for s, k in zip(keep, picks)],
                "center": torch.stack([s["center"][k] for s, k in zip(keep, picks)]),
                "mass": torch.stack([s["mass"][k] for s, k in zip(keep, picks)])}

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        c = self.task_config
        logits = model.referrer(batch["images"], model.encode(batch["texts"]), batch["valid"])
        out = {}
        pos_weight = torch.tensor(c.pos_weight, device=batch["images"].device)
        for name, weight in (("center", c.lambda_center), ("mass", c.lambda_mass)):
            if weight > 0:
                out[name] = weight * F.binary_cross_entropy_with_logits(logits[name], batch[name], pos_weight=pos_weight)
        return out

    def config_dict(self) -> dict[str, Any]:
        return {"pipeline": to_container(self.pipeline_config), "task": dataclasses.asdict(self.task_config)}

    def evaluate(self, model: nn.Module, step: int) -> Mapping[str, float] | None:
        """REC Acc@0.5 and RES cIoU / gIoU on ``val_split`` with ground-truth entities as proposals."""
        from esgkit.evaluation.run import score_predictions

        c = self.task_config
        if not c.val_split:
            return None
        if self._val is None:
            self._val = get_registry().build(
                "dataset", {"name": "shapesworld", "root": str(self.data_dir), "split": c.val_split}, key="dataset")
        segmenter = get_registry().build("segmenter", {"name": "ground_truth"}, key="segmenter")
        pipeline = ReferringPipeline.wrap(ReferringPipeline.Config(), segmenter, model)
        with tempfile.TemporaryDirectory() as tmp:
            metrics = score_predictions(pipeline.predict(self._val, tmp, max_images=c.val_images, progress=False))
        return {k: v for k, v in metrics.items() if k in ("Acc@0.5", "cIoU", "gIoU")}


__all__ = ["ReferringSamples", "ReferringTask", "ReferringTrainConfig"]
