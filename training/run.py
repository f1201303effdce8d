"""Training any pipeline config (what ``esgkit train`` runs): the config names its training task
through the registry, the generic ``Trainer`` runs it, and the final weights land where the
pipeline's config can name them.

Which task: ``train.task`` when the config sets it; else the task registered under the pipeline's
name (``gella``); else the one registered under the segmenter's name (``cropformer``,
``mask2former``, ``sam``: a ``colormap`` config trains its segmenter). A third party adds a task with
``register("task", name, MyTask)`` (a ``TrainingTask`` subclass whose ``Config`` holds its keys of
the ``train:`` section).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esgkit.core import get_registry, load_config
from esgkit.core.errors import ConfigError
from esgkit.core.schema import to_container

from .config import TrainConfig, split_train_section


def _name(section: Any) -> str:
    return str(section.get("name", "")) if isinstance(section, Mapping) else str(section or "")


def task_name(config: Mapping[str, Any]) -> str:
    """The registered task that trains ``config`` (the rule in the module docstring)."""
    registry = get_registry()
    train = config.get("train") or {}
    if train.get("task"):
        return str(train["task"])
    known = registry.names("task")
    for where in ("pipeline", "segmenter"):
        name = _name(config.get(where))
        if name in known:
            return name
    raise ConfigError(f"no training task for pipeline {_name(config.get('pipeline'))!r} with segmenter "
                      f"{_name(config.get('segmenter'))!r}; registered tasks: {', '.join(known)} — set train.task",
                      key="train.task")


def make_task(config: Any, data_dir: str | Path) -> tuple[Any, TrainConfig]:
    """The task that trains ``config`` (a loaded config, or a path / shipped name) on ``data_dir``, and
    the generic TrainConfig of its ``train:`` section."""
    if isinstance(config, (str, Path)):
        config = load_config(str(config))
    config = to_container(config)
    name = task_name(config)
    cls = get_registry().get("task", name, "train.task")
    train_config, settings = split_train_section(config.get("train") or {}, cls.Config)
    return cls(config, data_dir, settings), train_config


def train(config: Any, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``config`` with the generic Trainer; on rank 0 copy the final weights to
    ``OUT/<weights_name>.safetensors`` (what the pipeline's config takes as its checkpoint) and draw
    ``OUT/loss.png``. Returns the trainer's summary plus ``weights``."""
    from .metrics import plot_metrics
    from .trainer import Trainer

    from esgkit.layers.weights import latest_checkpoint

    task, train_config = make_task(config, data_dir)
    trainer = Trainer(task, train_config, out_dir, resume=resume, progress=progress)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        out = Path(out_dir)
        final = latest_checkpoint(out)
        if final is not None:
            weights = out / f"{task.weights_name}.safetensors"
            shutil.copyfile(final / "model.safetensors", weights)
            summary["weights"] = str(weights)
        plot_metrics(out / "metrics.jsonl", out / "loss.png", keys=task.loss_keys, log_y=task.log_scale)
    return summary


def describe(summary: Mapping[str, Any]) -> str:
    """One line about a finished run."""
    return (f"trained {summary['steps']} steps in {summary['seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s); "
            f"step {summary['step']}, last loss {summary['last'].get('loss', math.nan):.4f}")


__all__ = ["describe", "make_task", "task_name", "train"]
