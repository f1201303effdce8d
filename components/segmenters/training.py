"""Training the segmenters: the ``TrainingTask`` of each trainable segmenter, and what they share.

``make_task(config, data_dir)`` picks the task from the config's ``segmenter.name``:

    cropformer, mask2former   esgkit.components.segmenters.cropformer.train:CropFormerTask
    sam                       esgkit.components.segmenters.sam_train:SamTask

A training config is a pipeline config (e.g. ``pipelines/configs/cropformer_tiny.yaml``) whose
``segmenter:`` section is the architecture and whose ``train:`` section holds the generic
``TrainConfig`` keys (lr, steps, batch_size, …) together with the task's own keys (split, num_points,
…). The data folder is what ``esgkit data shapesworld`` writes (the EntitySeg-style
``annotations/entityseg_<split>.json`` with every thing and stuff entity, images in ``<split>/``).

Entry points (the same function, ``cmd_train_segmenter``)::

    esgkit train CONFIG --data DIR --out RUN [--resume] [key=value ...]      (non-GELLA configs land here)
    python -m esgkit.components.segmenters.training CONFIG --data DIR --out RUN [--resume] [key=value ...]

A run folder gets ``checkpoints/``, ``metrics.jsonl``, ``loss.png`` and ``<segmenter>.safetensors``
(the final weights, for ``segmenter.checkpoint``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.errors import ConfigError, EsgkitError, InputError
from esgkit.core.io import load_image

TASKS: dict[str, str] = {
    "cropformer": "esgkit.components.segmenters.cropformer.train:CropFormerTask",
    "mask2former": "esgkit.components.segmenters.cropformer.train:CropFormerTask",
    "sam": "esgkit.components.segmenters.sam_train:SamTask",
}
"""Segmenter name → its TrainingTask class (``module:Class``, imported on use)."""


def _section(config: Any, key: str) -> dict[str, Any]:
    from esgkit.core.config import to_container

    value = config.get(key) if hasattr(config, "get") else None
    if value is None:
        return {}
    if isinstance(value, str):
        return {"name": value}
    return dict(to_container(value))


def task_class(config: Any) -> type:
    """The TrainingTask class for the config's ``segmenter.name`` (ConfigError if it has none)."""
    name = str(_section(config, "segmenter").get("name", ""))
    if name not in TASKS:
        raise ConfigError(f"segmenter {name!r} has no training task here; trainable segmenters: "
                          f"{', '.join(sorted(TASKS))}", key="segmenter.name")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_task(config: Any, data_dir: str | Path) -> Any:
    """The TrainingTask that trains the config's segmenter on ``data_dir`` (``config`` a loaded
    pipeline config or a path/name of one). Its ``train_config`` is the generic TrainConfig."""
    from esgkit.core.config import load_config

    if isinstance(config, (str, Path)):
        config = load_config(str(config))
    return task_class(config)(config, data_dir)


def split_train_section(section: Mapping[str, Any], task_config_cls: type) -> tuple[Any, Any]:
    """``train:`` → (TrainConfig, task config), each validated with its full ``train.*`` key names."""
    from esgkit.core.config import validate_dataclass
    from esgkit.training.config import TrainConfig

    own = {f.name for f in dataclasses.fields(task_config_cls)}
    task_values = {k: v for k, v in section.items() if k in own}
    train_values = {k: v for k, v in section.items() if k not in own}
    return (validate_dataclass(TrainConfig, train_values, "train"),
            validate_dataclass(task_config_cls, task_values, "train"))


def segmenter_parts(config: Any) -> tuple[str, type, Any]:
    """(name, class, validated Config) of the config's ``segmenter`` section."""
    from esgkit.core import get_registry
    from esgkit.core.config import component_config

    registry = get_registry()
    name, seg_config = component_config(registry, "segmenter", _section(config, "segmenter"), "segmenter")
    return name, registry.get("segmenter", name, "segmenter.name"), seg_config


def open_entity_split(data_dir: str | Path, split: str) -> Any:
    """The EntitySeg-style split of a data folder, with an error that says how to make it."""
    from esgkit.datasets.entityseg import EntitySegDataset

    root = Path(data_dir)
    if not (root / "annotations" / f"entityseg_{split}.json").is_file():
        raise InputError(f"data folder {root} has no annotations/entityseg_{split}.json (split {split!r}); make it "
                         f"with `esgkit data shapesworld {root} --split {split}` or pass the right --data / split")
    return EntitySegDataset(EntitySegDataset.Config(root=str(root), split=split))


def score_entity_predictions(gt_path: str | Path, image_ids: Iterable[str], preds: list[dict[str, Any]],
                             variants: str = "H,L") -> dict[str, float]:
    """Score predictions ({image_id, segmentation (RLE), score}) on the given images of an
    EntitySeg-style GT JSON with the ``entity`` evaluator (keys APe, AP50, …, and *_L)."""
    from esgkit.evaluation.entity import EntityEvaluator

    keep = {str(i) for i in image_ids}
    gt_all = json.loads(Path(gt_path).read_text())
    subset = {**gt_all, "images": [im for im in gt_all["images"] if str(im["id"]) in keep],
              "annotations": [a for a in gt_all["annotations"] if str(a["image_id"]) in keep]}
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, pred_file = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_file.write_text(json.dumps(subset))
        pred_file.write_text(json.dumps(preds))
        return EntityEvaluator(EntityEvaluator.Config(variants=variants)).score(str(gt_file), str(pred_file))


def validation_ap(dataset: Any, segment: Callable[[np.ndarray], Any], max_images: int) -> dict[str, float]:
    """APe, APe_L and AP50 of ``segment`` on the first ``max_images`` images (all when ≤ 0): what a
    segmenter training task logs at each evaluation."""
    n = min(len(dataset), max_images) if max_images > 0 else len(dataset)
    result = entity_ap(dataset, segment, range(n))
    return {k: v for k, v in result.items() if k in ("APe", "APe_L", "AP50")}


def entity_ap(dataset: Any, segment: Callable[[np.ndarray], Any], indices: Iterable[int],
              variants: str = "H,L", progress: bool = False) -> dict[str, float]:
    """APe of ``segment`` (image → EntityMasks) on the given images of an EntitySeg-style dataset,
    scored by the ``entity`` evaluator (class-agnostic COCO AP; keys APe, AP50, …, and *_L)."""
    from esgkit.core.types import encode_rle

    indices = list(indices)
    iterator: Iterable[int] = indices
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(indices, desc="APe", unit="img")
    chosen: list[str] = []
    preds: list[dict[str, Any]] = []
    for i in iterator:
        image_id = dataset.image_ids[i]
        image = load_image(dataset.image_dir / dataset.index.images[image_id]["file_name"])
        chosen.append(image_id)
        result = segment(image)
        for mask, score in zip(result.masks, result.scores):
            preds.append({"image_id": image_id, "segmentation": encode_rle(mask), "score": float(score)})
    return score_entity_predictions(dataset.index.path, chosen, preds, variants)


# --------------------------------------------------------------------------- interim entry point


def train_segmenter(config: Any, data_dir: str | Path, out_dir: str | Path, resume: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Train the config's segmenter with the generic Trainer; on rank 0 copy the final weights to
    ``OUT/<segmenter>.safetensors`` (what ``segmenter.checkpoint`` takes) and draw ``OUT/loss.png``."""
    import shutil

    from esgkit.training.checkpoint import latest_checkpoint
    from esgkit.training.metrics import plot_metrics
    from esgkit.training.trainer import Trainer

    task = make_task(config, data_dir)
    trainer = Trainer(task, task.train_config, out_dir, resume=resume, progress=progress)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        out = Path(out_dir)
        final = latest_checkpoint(out)
        if final is not None:
            weights = out / f"{task.name}.safetensors"
            shutil.copyfile(final / "model.safetensors", weights)
            summary["weights"] = str(weights)
        plot_metrics(out / "metrics.jsonl", out / "loss.png", keys=task.loss_keys)
    return summary


def cmd_train_segmenter(config: Any, args: argparse.Namespace) -> int:
    """``esgkit train`` for a segmenter config (args: data, out, resume, no_progress)."""
    import math

    summary = train_segmenter(config, args.data, args.out, resume=args.resume,
                              progress=not getattr(args, "no_progress", False))
    if "weights" in summary:
        print(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s ({summary['steps_per_s']:.2f} steps/s); "
              f"step {summary['step']}, last loss {summary['last'].get('loss', math.nan):.4f}")
        print(f"wrote {summary['weights']}, {Path(args.out) / 'metrics.jsonl'}, {Path(args.out) / 'loss.png'}")
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """``CONFIG --data DIR --out RUN [--resume] [key=value ...]``: train the config's segmenter."""
    parser = argparse.ArgumentParser(prog="python -m esgkit.components.segmenters.training",
                                     description="Train a segmenter (cropformer, mask2former, sam) with esgkit's Trainer.")
    parser.add_argument("config", help="pipeline config with a train: section (e.g. cropformer_tiny)")
    parser.add_argument("--data", required=True, help="ShapesWorld-format data folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints/, metrics.jsonl, <segmenter>.safetensors)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. train.steps=200)")
    args = parser.parse_intermixed_args(argv)
    try:
        from esgkit.core.config import load_config

        return cmd_train_segmenter(load_config(args.config, args.overrides), args)
    except EsgkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(train_main())
