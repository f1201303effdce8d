"""esgkit training: trainers, losses, Hungarian matching.

Model-agnostic pieces that pipeline-specific training (GELLA, CropFormer, a tiny SAM) stands on:

- ``config.TrainConfig`` — optimiser, schedule, precision, freezing, checkpointing, logging settings;
- ``trainer.Trainer`` / ``trainer.TrainingTask`` — the resumable, data-parallel loop; a task
  supplies the model, the dataset, the collate function and the named losses;
- ``matching.hungarian_match`` — query ↔ entity assignment (scipy), with a joint cross-view variant;
- ``losses`` — point sampling, sigmoid BCE / Dice mask losses, entityness and association losses;
- ``criterion.SetCriterion`` — matching + losses over a batch and the decoder layers;
- ``checkpoint`` — crash-safe safetensors checkpoints with optimiser, scheduler and RNG state;
- ``metrics`` — reading ``metrics.jsonl`` and drawing loss curves (PNG).

Names are importable from here (``from esgkit.training import Trainer``); torch is imported only on
first use, so ``import esgkit.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "Trainer": "trainer",
    "TrainingTask": "trainer",
    "seed_everything": "trainer",
    "MatchCosts": "matching",
    "hungarian_match": "matching",
    "match_cost": "matching",
    "SetCriterion": "criterion",
    "SetCriterionConfig": "criterion",
    "point_sample": "losses",
    "mask_losses": "losses",
    "sigmoid_bce_loss": "losses",
    "dice_loss": "losses",
    "entityness_loss": "losses",
    "association_loss": "losses",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "load_weights": "checkpoint",
    "ShardedBatches": "distributed",
    "read_metrics": "metrics",
    "plot_metrics": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
