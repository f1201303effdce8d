"""``esgkit train CONFIG --data DIR --out RUN``: train any pipeline config with its registered task
(``esgkit.training.run``). Torch is imported inside the command only, so every other ``esgkit``
call stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser(
        "train", help="train a pipeline config with its task (GELLA, CropFormer/Mask2Former, SAM; esgkit list task)",
        description="The config's `train:` section holds the optimiser settings (esgkit.training.TrainConfig) and "
                    "the task's own keys (its Config; `train.task` names the task, by default the pipeline's or "
                    "the segmenter's). Overrides go after the options as key=value, e.g. train.steps=100 "
                    "mask_decoder.num_queries=16. Multi-process: torchrun --nproc_per_node K -m esgkit.core.cli "
                    "train ...")
    p.add_argument("config", help="pipeline config: a name (esgkit config list) or a YAML path")
    p.add_argument("--data", required=True, help="folder written by `esgkit data shapesworld` (with the train split)")
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, loss.png, <weights>.safetensors "
                                                "(new or empty; a folder of an earlier run needs --resume or --overwrite)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in --out: remove the earlier run's files (or write among other files, replacing "
                        "those of the run's names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, accepts_overrides=True)


def cmd_train(args: argparse.Namespace) -> int:
    from esgkit.core import load_config

    from .run import describe, train

    summary = train(load_config(args.config, getattr(args, "overrides", [])), args.data, args.out,
                    resume=args.resume, overwrite=getattr(args, "overwrite", False), progress=not args.no_progress)
    if "weights" in summary:
        out = Path(args.out)
        print(describe(summary))
        print(f"wrote {summary['weights']}, {out / 'metrics.jsonl'}, {out / 'loss.png'}")
    return 0


__all__ = ["add_commands"]
