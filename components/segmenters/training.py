"""Training the segmenters: the ``TrainingTask`` of each trainable segmenter, and what they share.

``make_task(config, data_dir)`` picks the task from the config's ``segmenter.name``:

    cropformer, mask2former   esgkit.components.segmenters.cropformer.train:CropFormerTask
    sam                       esgkit.components.segmenters.sam_train:SamTask

A training config is a pipeline config (e.g. ``pipelines/configs/cropformer_tiny.yaml``) whose
``segmenter:`` section is the architecture and whose ``train:`` section holds the generic
``TrainConfig`` keys (lr, steps, batch_size, …) together with the task's own keys (split, num_points,
…). The data folder is what ``esgkit data shapesworld`` writes (the EntitySeg-style
``annotations/entityseg_<split>.json`` with every thing and stuff entity, images in ``<split>/``).

Until ``esgkit train`` dispatches here, the entry point is::

    python -m esgkit.components.segmenters.training CONFIG --data DIR --out RUN [--resume] [key=value ...]
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


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def entity_ap(dataset: Any, segment: Callable[[np.ndarray], Any], indices: Iterable[int],
              variants: str = "H,L", progress: bool = False) -> dict[str, float]:
    """APe of ``segment`` (image → EntityMasks) on the given images of an EntitySeg-style dataset,
    scored by the ``entity`` evaluator (class-agnostic COCO AP; keys APe, AP50, …, and *_L)."""
    from esgkit.evaluation.entity import EntityEvaluator

    indices = list(indices)
    gt_path = dataset.index.path
    gt_all = json.loads(Path(gt_path).read_text())
    chosen: list[str] = []
    preds: list[dict[str, Any]] = []
    iterator: Iterable[int] = indices
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(indices, desc="APe", unit="img")
    for i in iterator:
        sample = dataset[i]
        image_id = sample["image_id"]
        chosen.append(image_id)
        result = segment(sample["image"])
        for mask, score in zip(result.masks, result.scores):
            preds.append({"image_id": image_id, "segmentation": _rle(mask), "score": float(score)})
    keep = set(chosen)
    subset = {**gt_all, "images": [im for im in gt_all["images"] if str(im["id"]) in keep],
              "annotations": [a for a in gt_all["annotations"] if str(a["image_id"]) in keep]}
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, pred_file = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_file.write_text(json.dumps(subset))
        pred_file.write_text(json.dumps(preds))
        return EntityEvaluator(EntityEvaluator.Config(variants=variants)).score(str(gt_file), str(pred_file))


# --------------------------------------------------------------------------- interim entry point


def train_main(argv: list[str] | None = None) -> int:
    """``CONFIG --data DIR --out RUN [--resume] [key=value ...]``: train the config's segmenter."""
    parser = argparse.ArgumentParser(prog="python -m esgkit.components.segmenters.training",
                                     description="Train a segmenter (cropformer, mask2former, sam) with esgkit's Trainer.")
    parser.add_argument("config", help="pipeline config with a train: section (e.g. cropformer_tiny)")
    parser.add_argument("--data", required=True, help="ShapesWorld-format data folder")
    parser.add_argument("--out", required=True, help="run folder (checkpoints/, metrics.jsonl)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. train.steps=200)")
    args = parser.parse_args(argv)
    try:
        from esgkit.core.config import load_config
        from esgkit.training.trainer import Trainer

        config = load_config(args.config, args.overrides)
        task = make_task(config, args.data)
        trainer = Trainer(task, task.train_config, args.out, resume=args.resume)
        try:
            summary = trainer.fit()
        finally:
            trainer.close()
    except EsgkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "last"}, default=str))
    print(f"weights: {Path(args.out) / 'checkpoints'} (model.safetensors of the last step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(train_main())
