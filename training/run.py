"""Training any pipeline config (what ``esgkit train`` runs): the config names its training task
through the registry, the generic ``Trainer`` runs it, and the final weights land where the
pipeline's config can name them.

Which task: ``train.task`` when the config sets it; else the task registered under the pipeline's
name (``gella``); else the one registered under the segmenter's name (``cropformer``,
``mask2former``, ``sam``: a ``colormap`` config trains its segmenter). A third party adds a task with
``register("task", name, MyTask)`` (a ``TrainingTask`` subclass whose ``Config`` holds its keys of
the ``train:`` section).

The run folder (``--out``, kind ``train`` of ``esgkit.core.outputs``): a new or empty folder starts a
run; a folder holding an earlier esgkit train run (a checkpoint) is continued with ``resume`` or
started over with ``overwrite`` (its run files removed first), and refused otherwise; one where a
killed run saved no checkpoint yet starts afresh; a folder with other files is refused, listing them,
unless ``overwrite`` (then only the run's own file names are replaced). ``metrics.jsonl`` is appended
row by row (a row torn by a kill is dropped on resume); every other file is written atomically.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esgkit.core import get_registry, load_config
from esgkit.core.errors import ConfigError, OutputError
from esgkit.core.outputs import MANIFEST, OutputFolder, atomic_path, check_folder, claim_folder
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


RUN_FILES = ("checkpoints", "metrics.jsonl", "config.json", "loss.png")
"""What a run writes into its folder, besides ``<weights_name>.safetensors``."""


def check_run_folder(out_dir: str | Path, *, resume: bool = False, overwrite: bool = False) -> str:
    """Apply the run-folder rule of the module docstring without writing anything: ``"start"``,
    ``"resume"`` or ``"overwrite"`` (start over, removing the run's files first); or an OutputError
    saying what to do."""
    from esgkit.layers.weights import latest_checkpoint

    if resume and overwrite:
        raise OutputError("--resume continues the run in --out and --overwrite starts it over: give only one")
    out = Path(out_dir)
    manifest = check_folder(out, "train", overwrite=True)  # a file, an unreadable folder: refused here
    if not out.is_dir():
        return "start"
    last = latest_checkpoint(out) if (out / "checkpoints").is_dir() else None
    ours = (manifest is not None and manifest["kind"] == "train") or last is not None  # runs before manifests too
    if not ours:
        check_folder(out, "train", overwrite)  # the user's files, or another command's: refused unless overwrite
        return "overwrite" if overwrite and any(p.name != MANIFEST for p in out.iterdir()) else "start"
    if overwrite:
        return "overwrite"
    if last is None:  # no checkpoint yet (e.g. killed before the first): nothing to continue
        return "start"
    if resume:
        return "resume"
    raise OutputError(f"--out {out} already holds an esgkit train run (checkpoint {last.name}); add --resume to "
                      "continue it or --overwrite to start it over, or give another folder")


def _remove_run_files(out: Path, weights_name: str) -> None:
    """Remove what a run writes (``--overwrite``): the run's own file names and those its manifest lists."""
    from esgkit.layers.weights import LATEST, list_checkpoints

    names = {*RUN_FILES, f"{weights_name}.safetensors"}
    manifest = check_folder(out, "train", overwrite=True)
    if manifest is not None and manifest["kind"] == "train":
        names |= {f for f in manifest.get("files", []) if isinstance(f, str) and "/" not in f and not f.startswith(".")}
    for name in sorted(names - {"checkpoints"}):
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    ckpt = out / "checkpoints"
    if ckpt.is_dir():
        for _, step_dir in list_checkpoints(ckpt):
            shutil.rmtree(step_dir)
        for stale in ckpt.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        (ckpt / LATEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            ckpt.rmdir()  # kept when the user had other files in it


def claim_run_folder(out_dir: str | Path, action: str, weights_name: str) -> OutputFolder:
    """Claim ``out_dir`` for a run after ``check_run_folder`` said ``action`` (rank 0 only)."""
    out = Path(out_dir)
    if action == "overwrite":
        _remove_run_files(out, weights_name)
    folder = claim_folder(out, "train", overwrite=True)  # the rule was applied by check_run_folder
    folder.record(*RUN_FILES, f"{weights_name}.safetensors")
    return folder


def _rank() -> int:
    """This process's global rank: torchrun's ``RANK`` (the process group is not joined yet)."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def train(config: Any, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``config`` with the generic Trainer into the run folder ``out_dir`` (the rule of the module
    docstring); on rank 0 copy the final weights to ``OUT/<weights_name>.safetensors`` (what the
    pipeline's config takes as its checkpoint) and draw ``OUT/loss.png``, both atomically. Returns the
    trainer's summary plus ``weights``."""
    from .metrics import plot_metrics
    from .trainer import Trainer

    from esgkit.layers.weights import latest_checkpoint

    action = check_run_folder(out_dir, resume=resume, overwrite=overwrite)  # every process, before any work
    task, train_config = make_task(config, data_dir)
    if _rank() == 0:
        claim_run_folder(out_dir, action, task.weights_name)
    trainer = Trainer(task, train_config, out_dir, resume=action == "resume", progress=progress)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        out = Path(out_dir)
        final = latest_checkpoint(out)
        if final is not None:
            weights = out / f"{task.weights_name}.safetensors"
            with atomic_path(weights) as tmp:
                shutil.copyfile(final / "model.safetensors", tmp)
            summary["weights"] = str(weights)
        with atomic_path(out / "loss.png") as tmp:
            plot_metrics(out / "metrics.jsonl", tmp, keys=task.loss_keys, log_y=task.log_scale)
    return summary


def describe(summary: Mapping[str, Any]) -> str:
    """One line about a finished run."""
    return (f"trained {summary['steps']} steps in {summary['seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s); "
            f"step {summary['step']}, last loss {summary['last'].get('loss', math.nan):.4f}")


__all__ = ["describe", "make_task", "task_name", "train"]
