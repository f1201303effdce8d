"""``esgkit train`` and ``esgkit eval``: train a GELLA pipeline on a ShapesWorld-format folder and
measure it (PNG AR, noun-extraction recall, RES cIoU/gIoU). Torch is imported inside the commands
only, so every other ``esgkit`` call stays fast."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser(
        "train", help="train a GELLA pipeline (losses L_seg + L_asso + L_ans) on a ShapesWorld folder",
        description="The config's `train:` section holds the optimiser settings (esgkit.training.TrainConfig) and "
                    "GELLA's own (subtasks, split, ...; esgkit.pipelines.gella_train.GellaTrainConfig). Overrides "
                    "go after the options as key=value, e.g. train.steps=100 mask_decoder.num_queries=16. Multi-process: "
                    "torchrun --nproc_per_node K -m esgkit.core.cli train ...")
    p.add_argument("config", help="pipeline config: a name (esgkit config list) or a YAML path")
    p.add_argument("--data", required=True, help="folder written by `esgkit data shapesworld` (with the train split)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, config.json, gella.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, accepts_overrides=True)

    e = sub.add_parser(
        "eval", help="measure a GELLA pipeline on a ShapesWorld split (PNG AR, noun recall, RES cIoU/gIoU)",
        description="Ground-truth entity masks are GELLA's input. Writes the metrics to --out and the prediction "
                    "files beside it (they can be re-scored with `esgkit score`).")
    e.add_argument("config", help="pipeline config: a name (e.g. gella_tiny_trained) or a YAML path")
    e.add_argument("--data", required=True, help="folder written by `esgkit data shapesworld`")
    e.add_argument("--out", required=True, help="metrics JSON file to write")
    e.add_argument("--checkpoint", help="weights: a .safetensors file, or a run folder of `esgkit train` (its newest checkpoint)")
    e.add_argument("--split", default="val", help="split to evaluate (default: val)")
    e.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images (default: all)")
    e.add_argument("--no-res", action="store_true", help="skip the referring-expression evaluation")
    e.set_defaults(func=cmd_eval, accepts_overrides=True)


def _weights_file(path: str) -> str:
    """A .safetensors file as given, or the newest checkpoint's weights in a run folder."""
    from esgkit.core.errors import CheckpointError
    from esgkit.training.checkpoint import latest_checkpoint

    p = Path(path)
    if p.is_file():
        return str(p.resolve())
    if p.is_dir():
        if (p / "gella.safetensors").is_file():
            return str((p / "gella.safetensors").resolve())
        folder = latest_checkpoint(p)
        if folder is not None:
            return str((folder / "model.safetensors").resolve())
    raise CheckpointError(f"--checkpoint {path}: no such file, and no checkpoint of `esgkit train` under it")


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from esgkit.core import load_config
    from esgkit.core.config import to_container
    from esgkit.core.errors import ConfigError
    from esgkit.pipelines.gella_train import GellaTask, check_data_dir, split_train_section
    from esgkit.training.checkpoint import latest_checkpoint
    from esgkit.training.metrics import plot_metrics
    from esgkit.training.trainer import Trainer

    config = to_container(load_config(args.config, getattr(args, "overrides", [])))
    name = config.get("pipeline", {}).get("name") if isinstance(config.get("pipeline"), dict) else config.get("pipeline")
    from esgkit.components.segmenters.training import TASKS, cmd_train_segmenter  # trainable segmenters

    segmenter = config.get("segmenter") or {}
    if name != "gella" and isinstance(segmenter, dict) and segmenter.get("name") in TASKS:
        return cmd_train_segmenter(config, args)
    if name != "gella":
        raise ConfigError(f"esgkit train trains GELLA pipelines; this config's pipeline is {name!r}", key="pipeline.name")
    train_config, task_config = split_train_section(config.get("train") or {})
    check_data_dir(args.data, task_config.split)
    task = GellaTask(config, args.data, task_config)
    trainer = Trainer(task, train_config, args.out, resume=args.resume, progress=not args.no_progress)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        out = Path(args.out)
        final = latest_checkpoint(out)
        if final is not None:
            shutil.copyfile(final / "model.safetensors", out / "gella.safetensors")
        plot_metrics(out / "metrics.jsonl", out / "loss.png",
                     keys=("loss", "ans", "asso", "seg_class", "seg_mask", "seg_dice", "tag"), log_y=True)
        print(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s "
              f"({summary['steps_per_s']:.2f} steps/s); step {summary['step']}, last loss "
              f"{summary['last'].get('loss', math.nan):.4f}")
        print(f"wrote {out / 'gella.safetensors'}, {out / 'metrics.jsonl'}, {out / 'loss.png'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from esgkit.core import build_pipeline, load_config
    from esgkit.core.config import to_container
    from esgkit.core.errors import ConfigError
    from esgkit.evaluation.cli import format_metrics
    from esgkit.pipelines.gella_eval import evaluate_pipeline
    from esgkit.pipelines.gella_train import check_data_dir

    check_data_dir(args.data, args.split)
    config = to_container(load_config(args.config, getattr(args, "overrides", [])))
    if args.checkpoint:  # these weights replace the config's own (which may not fit an overridden architecture)
        config["pipeline"] = {**config.get("pipeline", {}), "checkpoint": str(_weights_file(args.checkpoint))}
    pipeline = build_pipeline(config)
    if not hasattr(pipeline, "visual_forward"):
        raise ConfigError("esgkit eval measures GELLA pipelines (pipeline: gella)", key="pipeline.name")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pred_dir = out.with_name(out.stem + "_predictions")
    metrics = evaluate_pipeline(pipeline, args.data, args.split, max_images=args.max_images, res=not args.no_res,
                                out_dir=pred_dir)
    print(format_metrics(metrics))
    clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    out.write_text(json.dumps({"config": args.config, "overrides": list(getattr(args, "overrides", []) or []),
                               "checkpoint": args.checkpoint, "data": str(args.data),
                               "split": args.split, "metrics": clean}, indent=1))
    print(f"wrote {out} (predictions in {pred_dir})")
    return 0
