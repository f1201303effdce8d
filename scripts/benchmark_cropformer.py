"""CropFormer vs Mask2Former, side by side (ESG paper Table VI and §4.1 claims), on a high-resolution split.

Four settings, each in its own process (so each peak RSS is its own), on the same images:

    cropformer       full view + 4 corner crops at the input size, fused at the original resolution
    mask2former      the same network, full view only, at the same input size
    mask2former_hr   Mask2Former at the original resolution: its own config and weights
                     (--mask2former-hr-config/-weights: one trained at full resolution); without them
                     the mask2former weights run with segmenter.short_side=0
    sam              automatic masks of the SAM config (--sam-config/-weights)

For each, the Table VI columns: APe-H and APe-L (the ``entity`` evaluator: class-agnostic COCO mask AP
at the original resolution, and with images resized to short side 800 / long side ≤ 1333), AP50-H,
APe on small / medium / large entities (COCO's size ranges on the "L" images, < 32², < 96², larger),
APe on the thin entities (``--subset``: ShapesWorld's wires and fences), the mean inference time per
image (network + fusion; the first image is a warm-up and is not timed) and the peak memory: the
process's peak RSS, and the part of it that inference adds (peak RSS after the images minus peak RSS
once the model is built). The ratios the issue asks for are printed at the end:

    APe-H gap        CropFormer − Mask2Former (same input size)      target ≥ +1.5 points (paper +1.5)
    time ratio       CropFormer / Mask2Former at full resolution     target ≤ 0.5 (paper 0.45)
    memory ratio     CropFormer / Mask2Former at full resolution     target ≤ 0.7 (paper 0.66; RSS added by inference)
    APe-H vs hr      CropFormer − Mask2Former at full resolution     target ≥ 0

Predictions are written with ``FusedMasks.iter_masks`` (one entity mask in memory at a time).
Everything runs on one CPU thread (``--threads``). Usage::

    python scripts/benchmark_cropformer.py --data DATA --split val --max-images 8 \\
        --cropformer-weights RUN_CF/cropformer.safetensors --mask2former-weights RUN_M2F/mask2former.safetensors \\
        [--json results.json]

Without weights the networks are random (the figures then measure cost only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS = ("cropformer", "mask2former", "mask2former_hr", "sam")
COLUMNS = (("APe_H", "APe-H"), ("APe_L", "APe-L"), ("AP50_H", "AP50-H"), ("APs_L", "APe-S"), ("APm_L", "APe-M"),
           ("APl_L", "APe-L(arge)"), ("APe_thin", "APe-thin"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def setting_config(args: argparse.Namespace, name: str) -> tuple[str, list[str]]:
    """(config, overrides) of a setting."""
    extra: list[str] = []
    if name == "mask2former_hr" and not args.mask2former_hr_config:  # the low-resolution weights at full size
        config, weights, extra = args.mask2former_config, args.mask2former_weights, ["segmenter.short_side=0"]
    else:
        config, weights = getattr(args, f"{name}_config"), getattr(args, f"{name}_weights")
    return config, extra + ([f"segmenter.checkpoint={weights}"] if weights else [])


def entity_masks(segmenter: Any, image: Any) -> Any:
    """(mask, score) of each entity, one mask in memory at a time where the segmenter can (CropFormer's
    ``fuse``); other segmenters' ``segment``."""
    if hasattr(segmenter, "fuse"):
        for _, mask, score in segmenter.fuse(image).iter_masks():
            yield mask, score
    else:
        result = segmenter.segment(image)
        yield from zip(result.masks, result.scores)


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One setting in this process: build, segment every image, measure, score."""
    import torch

    torch.set_num_threads(args.threads)
    import tempfile

    from esgkit.core import Predictions, get_registry, load_config
    from esgkit.core.io import load_image
    from esgkit.core.types import encode_rle
    from esgkit.evaluation.run import score_predictions
    from esgkit.training.tasks.segmenters import open_entity_split

    config, overrides = setting_config(args, args.worker)
    segmenter = get_registry().build("segmenter", load_config(config, overrides).segmenter)
    dataset = open_entity_split(args.data, args.split)
    ids = dataset.image_ids[: args.max_images] if args.max_images > 0 else dataset.image_ids
    paths = [dataset.image_dir / dataset.index.images[i]["file_name"] for i in ids]
    base = peak_rss_mb()
    preds: list[dict[str, Any]] = []
    times: list[float] = []
    size = None
    empty = 0
    for k, (image_id, path) in enumerate(zip(ids, paths)):
        image = load_image(path)
        size = image.shape[:2]
        start = time.perf_counter()
        found = [(encode_rle(mask), float(score)) for mask, score in entity_masks(segmenter, image)]
        seconds = time.perf_counter() - start  # encoding included: fusion yields masks lazily
        if k > 0 or len(ids) == 1:
            times.append(seconds)
        preds += [{"image_id": image_id, "segmentation": rle, "score": score} for rle, score in found]
        empty += not found
        del image
    peak = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        pred_file = Path(tmp) / "pred.json"
        pred_file.write_text(json.dumps(preds))
        gt, options = dataset.ground_truth("entity", ids, tmp)
        metrics = score_predictions([Predictions("entity", gt, str(pred_file),
                                                 {**options, "variants": "H,L", "subset": args.subset})])
    c = segmenter.config
    if hasattr(segmenter, "regions"):
        from esgkit.components.segmenters.cropformer.segmenter import resized_input_size

        views, input_size = len(segmenter.regions(*size)), list(resized_input_size(*size, c.short_side, c.max_long_side))
    else:  # SAM: its image encoder's square input
        views, input_size = 1, [segmenter.sam.image_encoder.img_size] * 2
    scores = {"APe_H": metrics["APe"], "APe_L": metrics["APe_L"], "AP50_H": metrics["AP50"],
              **{k: metrics[k] for k in ("APs_L", "APm_L", "APl_L")},
              "APe_thin": metrics.get("APe_subset", float("nan"))}
    return {"setting": args.worker, "config": config, "overrides": overrides, "checkpoint": c.checkpoint, "images": len(ids),
            "image_size": list(size), "input_size": input_size, "views": views,
            **{k: 100 * v for k, v in scores.items()}, "seconds_per_image": sum(times) / len(times),
            "peak_rss_mb": peak, "inference_rss_mb": peak - base, "detections": len(preds),
            "images_without_entities": empty}


def run_workers(names: list[str], command: list[str], env: dict[str, str], jobs: int) -> dict[str, Any]:
    """Each setting's worker process (``command --worker NAME``), at most ``jobs`` at a time; their
    completed processes by name. Settings measured side by side share the machine: give each a core."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, "--worker", name], capture_output=True, text=True, env=env)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(zip(names, pool.map(one, names)))


def table(results: dict[str, dict[str, Any]]) -> str:
    """The settings side by side as a markdown table (Table VI's columns)."""
    head = ["setting", "input", "views", *[title for _, title in COLUMNS], "s / image", "peak RSS MB", "inference RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, "x".join(map(str, r["input_size"])), str(r["views"]), *[f"{r[key]:.1f}" for key, _ in COLUMNS],
                 f"{r['seconds_per_image']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['inference_rss_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ShapesWorld-format folder (esgkit data shapesworld)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, default=8, help="0 = every image of the split")
    parser.add_argument("--cropformer-config", default="cropformer_tiny")
    parser.add_argument("--mask2former-config", default="mask2former_tiny")
    parser.add_argument("--cropformer-weights", default="")
    parser.add_argument("--mask2former-weights", default="")
    parser.add_argument("--mask2former-hr-config", default="mask2former_hr_tiny",
                        help="Mask2Former trained at full resolution ('' = the mask2former config at short_side 0)")
    parser.add_argument("--mask2former-hr-weights", default="")
    parser.add_argument("--sam-config", default="sam_tiny")
    parser.add_argument("--sam-weights", default="")
    parser.add_argument("--subset", default="thin", help="categories / supercategories of the APe-thin column ('' = none)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ", ".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="settings measured at the same time (one core each)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0

    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    for name in names:
        if name not in SETTINGS:
            parser.error(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    outputs = run_workers(names, [sys.executable, __file__, *sys.argv[1:]], env, args.jobs)
    failed = [name for name in names if outputs[name].returncode != 0]
    for name in failed:
        print(f"setting {name} failed:\n{outputs[name].stderr}", file=sys.stderr)
    if failed:
        return 1
    results = {name: json.loads(outputs[name].stdout.strip().splitlines()[-1]) for name in names}
    for name, r in results.items():
        if r["images_without_entities"]:
            print(f"warning: {name} found no entity in {r['images_without_entities']} of {r['images']} images",
                  file=sys.stderr)
    print(table(results))

    ratios: dict[str, float] = {}
    cf, m2f, hr = results.get("cropformer"), results.get("mask2former"), results.get("mask2former_hr")
    if cf and m2f:
        ratios["APe_H_gap_vs_mask2former"] = cf["APe_H"] - m2f["APe_H"]
        print(f"APe-H gap, CropFormer − Mask2Former (same input):   {ratios['APe_H_gap_vs_mask2former']:+.1f} points "
              f"(target ≥ +1.5)")
    if cf and hr:
        ratios["time_ratio_vs_hr"] = cf["seconds_per_image"] / hr["seconds_per_image"]
        ratios["memory_ratio_vs_hr"] = cf["inference_rss_mb"] / max(hr["inference_rss_mb"], 1e-9)
        ratios["peak_rss_ratio_vs_hr"] = cf["peak_rss_mb"] / hr["peak_rss_mb"]
        ratios["APe_H_gap_vs_hr"] = cf["APe_H"] - hr["APe_H"]
        print(f"time ratio, CropFormer / Mask2Former full-res:      {ratios['time_ratio_vs_hr']:.2f}x (target ≤ 0.5)")
        print(f"memory ratio (RSS added by inference):             {ratios['memory_ratio_vs_hr']:.2f}x (target ≤ 0.7); "
              f"whole-process peak RSS {ratios['peak_rss_ratio_vs_hr']:.2f}x")
        print(f"APe-H gap, CropFormer − Mask2Former full-res:       {ratios['APe_H_gap_vs_hr']:+.1f} points (target ≥ 0)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratios": ratios, "args": vars(args)}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
