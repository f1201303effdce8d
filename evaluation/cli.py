"""``esgkit score TASK --gt GT --pred PRED [--out FILE] [key=value ...]``: score prediction files made
by any method with a registered evaluator."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    p = subparsers.add_parser(
        "score", help="score prediction files against ground truth (png, res, rec, entity, panoptic)",
        description="File formats: docs/formats.md. Evaluator options go after the files as key=value, "
                    "e.g. `esgkit score res --gt refs(unc).p --pred p.json split=val`.")
    p.add_argument("task", help="evaluator name (esgkit list evaluator)")
    p.add_argument("--gt", required=True, help="ground-truth file (or folder, for res/rec)")
    p.add_argument("--pred", required=True, help="prediction file")
    p.add_argument("--out", help="also write the metrics to this JSON file")
    p.set_defaults(func=_score, accepts_overrides=True)  # key=value words: evaluator options


def parse_options(options: list[str]) -> dict[str, str]:
    from esgkit.core.errors import ConfigError

    out = {}
    for o in options:
        key, sep, value = o.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {o!r} is not of the form key=value")
        out[key] = value
    return out


def format_metrics(metrics: dict[str, float]) -> str:
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"{k:<{width}}  {'n/a' if math.isnan(v) else f'{v:.4f}'}" for k, v in metrics.items())


def _score(args: argparse.Namespace) -> int:
    from esgkit.core import get_registry

    evaluator = get_registry().build("evaluator", {"name": args.task, **parse_options(getattr(args, "overrides", []))}, key="evaluator")
    metrics = evaluator.score(args.gt, args.pred)  # type: ignore[attr-defined]
    print(format_metrics(metrics))
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
        path.write_text(json.dumps({"task": args.task, "gt": args.gt, "pred": args.pred, "metrics": clean}, indent=1))
        print(f"wrote {path}")
    return 0
