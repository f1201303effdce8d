"""``esgkit score`` (score any method's prediction files with a registered evaluator) and
``esgkit eval`` (run a pipeline on a dataset and score it, for any pipeline that predicts)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    p = subparsers.add_parser(
        "score", help="score prediction files against ground truth (esgkit list evaluator)",
        description="File formats: docs/formats.md. Evaluator options go after the files as key=value, "
                    "e.g. `esgkit score res --gt refs(unc).p --pred p.json split=val`.")
    p.add_argument("task", help="evaluator name (esgkit list evaluator)")
    p.add_argument("--gt", required=True, help="ground-truth file (or folder, for res/rec)")
    p.add_argument("--pred", required=True, help="prediction file")
    p.add_argument("--out", help="also write the metrics to this JSON file (a new file, or one `esgkit score` wrote)")
    p.add_argument("--overwrite", action="store_true", help="replace --out even when esgkit score did not write it")
    p.set_defaults(func=cmd_score, accepts_overrides=True)  # key=value words: evaluator options

    e = subparsers.add_parser(
        "eval", help="run a pipeline on a dataset split and score it (GELLA: PNG AR, noun recall, RES; "
                     "segmenters: APe)",
        description="The pipeline writes its prediction files and the matching ground truth beside --out "
                    "(re-score them with `esgkit score`); each is scored by its registered evaluator. GELLA "
                    "grounds on the dataset's ground-truth masks unless its segmenter says otherwise.")
    e.add_argument("config", help="pipeline config: a name (e.g. gella_tiny_trained) or a YAML path")
    e.add_argument("--data", required=True, help="the dataset's folder (e.g. written by `esgkit data shapesworld`)")
    e.add_argument("--out", required=True, help="metrics JSON file to write (a new file, or one `esgkit eval` wrote); "
                                                "the prediction files go to the folder <stem>_predictions beside it")
    e.add_argument("--overwrite", action="store_true",
                   help="replace --out and write into <stem>_predictions even when esgkit eval did not write them")
    e.add_argument("--dataset", default="shapesworld", help="dataset reader (esgkit list dataset; default shapesworld)")
    e.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the dataset reader, e.g. refs=refcoco+ (ShapesWorld's RefCOCO+-style "
                        "expressions); repeatable")
    e.add_argument("--checkpoint", help="weights replacing the config's own: a .safetensors file, or a run folder "
                                        "of `esgkit train` (its newest checkpoint)")
    e.add_argument("--split", default="val", help="split to evaluate (default: val)")
    e.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images (default: all)")
    e.add_argument("--skip", action="append", default=[], metavar="PART",
                   help="a part of the pipeline's predictions not to run (GELLA: oracle, nouns, res, panoptic, "
                   "reconstruction); repeatable")
    e.add_argument("--no-res", action="store_true", help="GELLA: skip the referring expressions (= --skip res)")
    e.add_argument("--segmenter", metavar="CONFIG", help="take the segmenter section of this config (a shipped name "
                   "such as mask2former_tiny or sam_tiny, or a YAML path): the masks GELLA grounds on, in one word")
    e.add_argument("--mask-cache", metavar="DIR", help="where the segmenter's masks are cached (default: "
                   "$ESGKIT_CACHE_DIR/segments, else ~/.cache/esgkit/segments); re-evaluating on the same masks "
                   "does not re-run the segmenter")
    e.add_argument("--no-mask-cache", action="store_true", help="always run the segmenter; keep nothing")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval, accepts_overrides=True)


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


def write_metrics(path: str | Path, record: dict, metrics: dict[str, float]) -> Path:
    """``{**record, "metrics": …}`` as JSON (NaN written as null), creating the folder; atomically, so
    a crash leaves the old file or none."""
    from esgkit.core.outputs import atomic_write

    clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    return atomic_write(path, json.dumps({**record, "metrics": clean}, indent=1))


def cmd_score(args: argparse.Namespace) -> int:
    """Score; ``--out`` (kind ``score`` of ``esgkit.core.outputs``): never --gt or --pred, never a
    folder, an existing file only if `esgkit score` wrote it (its ``written_by``) or with --overwrite."""
    from esgkit.core import get_registry
    from esgkit.core.outputs import claim_file, written_by_tag

    if args.out:  # refuse before scoring
        claim_file(args.out, "score", getattr(args, "overwrite", False), inputs=[args.gt, args.pred])
    evaluator = get_registry().build("evaluator", {"name": args.task, **parse_options(getattr(args, "overrides", []))},
                                     key="evaluator")
    metrics = evaluator.score(args.gt, args.pred)  # type: ignore[attr-defined]
    print(format_metrics(metrics))
    if args.out:
        record = {"written_by": written_by_tag("score"), "task": args.task, "gt": args.gt, "pred": args.pred}
        print(f"wrote {write_metrics(args.out, record, metrics)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate; ``--out`` is claimed as kind ``eval`` (as ``score``), the folder ``<stem>_predictions``
    beside it as kind ``eval-predictions`` (``esgkit.core.outputs``), both before any work."""
    from esgkit.core import build_pipeline, get_registry, load_config
    from esgkit.core.config import section_of
    from esgkit.core.outputs import check_folder, claim_file, claim_folder, written_by_tag
    from esgkit.core.pipeline import with_weights
    from esgkit.core.schema import to_container
    from esgkit.layers.weights import trained_weights

    from .run import evaluate

    overwrite = getattr(args, "overwrite", False)
    out = claim_file(args.out, "eval", overwrite, inputs=[a for a in (args.checkpoint,) if a])
    pred_dir = out.with_name(out.stem + "_predictions")
    check_folder(pred_dir, "eval-predictions", overwrite, option="the prediction folder")  # before any work
    registry = get_registry()
    options = parse_options(args.dataset_option)
    dataset = registry.build("dataset", {"name": args.dataset, "root": str(args.data), "split": args.split, **options},
                             key="dataset")
    overrides = list(getattr(args, "overrides", []) or [])
    # the other config's whole segmenter section, before the key=value overrides
    sections = {"segmenter": section_of(args.segmenter, "segmenter", "--segmenter")} if args.segmenter else {}
    config = to_container(load_config(args.config, overrides, sections=sections))
    if args.checkpoint:  # these weights replace the config's own (which may not fit an overridden architecture)
        config = with_weights(config, str(trained_weights(args.checkpoint)), registry)
    pipeline = build_pipeline(config)
    skip = set(args.skip) | ({"res"} if args.no_res else set())
    record = {"written_by": written_by_tag("eval"), "config": args.config, "overrides": overrides,
              "segmenter_config": args.segmenter, "checkpoint": args.checkpoint, "data": str(args.data),
              "split": args.split, "dataset_options": options}
    cached = None
    if getattr(pipeline, "segmenter", None) is not None:
        from esgkit.pipelines.segment_cache import CachedSegmenter, cached_segmenter, default_cache_dir, segmenter_identity

        record["segmenter"] = segmenter_identity(pipeline.segmenter)  # which masks were graded
        if not args.no_mask_cache:
            pipeline.segmenter = cached_segmenter(pipeline.segmenter, args.mask_cache or default_cache_dir(),
                                                  identity=record["segmenter"])
            cached = pipeline.segmenter if isinstance(pipeline.segmenter, CachedSegmenter) else None
    predictions = claim_folder(pred_dir, "eval-predictions", overwrite, option="the prediction folder")
    metrics = evaluate(pipeline, dataset, pred_dir, max_images=args.max_images, skip=skip,
                       progress=not args.no_progress)
    predictions.record(*(p.name for p in sorted(pred_dir.iterdir()) if not p.name.startswith(".")))
    if cached is not None:
        print(f"{record['segmenter']['name']} masks: {cached.misses} images segmented, {cached.hits} read from "
              f"the cache {cached.folder}")
    print(format_metrics(metrics))
    write_metrics(out, record, metrics)
    print(f"wrote {out} (predictions in {pred_dir})")
    return 0


__all__ = ["add_commands", "format_metrics", "parse_options", "write_metrics"]
