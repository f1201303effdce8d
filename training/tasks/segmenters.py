"""What the segmenter training tasks (``cropformer``, ``sam``) share: the config's segmenter, the
EntitySeg-style split they train on, and the APe they log at each evaluation.

A training config is a pipeline config (e.g. ``pipelines/configs/cropformer_tiny.yaml``) whose
``segmenter:`` section is the architecture and whose ``train:`` section holds the generic
``TrainConfig`` keys (lr, steps, batch_size, …) together with the task's own keys (split,
num_points, …). The data folder is what ``esgkit data shapesworld`` writes (the EntitySeg-style
``annotations/entityseg_<split>.json`` with every thing and stuff entity, images in ``<split>/``).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from esgkit.core import Segmenter, get_registry
from esgkit.core.errors import InputError
from esgkit.core.schema import to_container

from ..trainer import TrainingTask


def section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A top-level section of a loaded config as a plain dict (``{"name": x}`` for a bare name)."""
    value = config.get(key) if hasattr(config, "get") else None
    if value is None:
        return {}
    if isinstance(value, str):
        return {"name": value}
    return dict(to_container(value))


def segmenter_parts(config: Mapping[str, Any]) -> tuple[str, type, Any]:
    """(name, class, validated Config) of the config's ``segmenter`` section."""
    registry = get_registry()
    name, seg_config = registry.validated("segmenter", section(config, "segmenter"), "segmenter")
    return name, registry.get("segmenter", name, "segmenter.name"), seg_config


def open_entity_split(data_dir: str | Path, split: str) -> Any:
    """The EntitySeg-style split of a data folder, with an error that says how to make it."""
    root = Path(data_dir)
    if not (root / "annotations" / f"entityseg_{split}.json").is_file():
        raise InputError(f"data folder {root} has no annotations/entityseg_{split}.json (split {split!r}); make it "
                         f"with `esgkit data shapesworld {root} --split {split}` or pass the right --data / split")
    return get_registry().build("dataset", {"name": "entityseg", "root": str(root), "split": split}, key="dataset")


def validation_ap(dataset: Any, segmenter: Segmenter, max_images: int) -> dict[str, float]:
    """APe, APe_L and AP50 of ``segmenter`` on the first ``max_images`` images (all when ≤ 0): what a
    segmenter training task logs at each evaluation (the ``colormap`` pipeline's predictions, scored
    by the ``entity`` evaluator)."""
    from esgkit.evaluation.run import score_predictions
    from esgkit.pipelines.colormap import entity_predictions

    with tempfile.TemporaryDirectory() as tmp:
        metrics = score_predictions([entity_predictions(segmenter, dataset, tmp, max_images)])
    return {k: v for k, v in metrics.items() if k in ("APe", "APe_L", "AP50")}


class SegmenterTask(TrainingTask):
    """A task training the config's segmenter: the run's config and APe on ``val_split`` every
    evaluation. Subclasses set ``task_config`` (with ``val_split`` / ``val_images``), ``pipeline_config``
    and ``data_dir``, and may override ``validation_segmenter``."""

    task_config: Any
    pipeline_config: Any
    data_dir: Path
    _val: Any = None

    def validation_segmenter(self, model: nn.Module) -> Segmenter:
        """The segmenter whose APe is measured (default: the trained model itself)."""
        return model  # type: ignore[return-value]

    def config_dict(self) -> dict[str, Any]:
        return {"pipeline": to_container(self.pipeline_config), "task": dataclasses.asdict(self.task_config)}

    def evaluate(self, model: nn.Module, step: int) -> Mapping[str, float] | None:
        """APe, APe_L and AP50 on ``val_split`` (its first ``val_images`` images)."""
        c = self.task_config
        if not c.val_split:
            return None
        if self._val is None:
            self._val = open_entity_split(self.data_dir, c.val_split)
        return validation_ap(self._val, self.validation_segmenter(model), c.val_images)


__all__ = ["SegmenterTask", "open_entity_split", "section", "segmenter_parts", "validation_ap"]
