"""esgkit training: the trainer, losses and the training tasks — its own room: pipelines and
components never import it.

- ``run.train`` / ``run.make_task`` — what ``esgkit train`` does: the config's registered ``task``
  (``tasks/``: GELLA, CropFormer/Mask2Former, tiny SAM) run by the generic trainer;
- ``config.TrainConfig`` — optimiser, schedule, precision, freezing, checkpointing, logging settings;
- ``trainer.Trainer`` / ``trainer.TrainingTask`` — the resumable, data-parallel loop; a task
  supplies the model, the dataset, the collate function and the named losses;
- ``losses`` — importance-sampled sigmoid BCE / Dice mask losses, entityness and association losses
  (Hungarian matching and point sampling are shared building blocks: ``esgkit.layers``);
- ``criterion.SetCriterion`` — matching + losses over a batch and the decoder layers;
- ``checkpoint`` — crash-safe safetensors checkpoints with optimiser, scheduler and RNG state;
- ``metrics`` — reading ``metrics.jsonl`` and drawing loss curves (PNG).

Names are importable from here (``from esgkit.training import Trainer``); torch is imported only on
first use, so ``import esgkit.training`` stays cheap.
"""

from esgkit.core.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "split_train_section": "config",
    "train": "run",
    "make_task": "run",
    "Trainer": "trainer",
    "TrainingTask": "trainer",
    "seed_everything": "trainer",
    "SetCriterion": "criterion",
    "SetCriterionConfig": "criterion",
    "mask_losses": "losses",
    "sigmoid_bce_loss": "losses",
    "dice_loss": "losses",
    "entityness_loss": "losses",
    "association_loss": "losses",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "ShardedBatches": "distributed",
    "read_metrics": "metrics",
    "plot_metrics": "metrics",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
