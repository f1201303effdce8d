"""CropFormer vs Mask2Former, side by side (ESG paper Table VI and §4.1 claims), on a high-resolution split.

Three settings, each in its own process (so each peak RSS is its own), on the same images:

    cropformer       full view + 4 corner crops at the input size, fused at the original resolution
    mask2former      the same network, full view only, at the same input size
    mask2former_hr   the same Mask2Former weights run at the original resolution (segmenter.short_side=0)

For each: APe-H and APe-L (the ``entity`` evaluator: class-agnostic COCO mask AP at the original
resolution, and with images resized to short side 800 / long side ≤ 1333), the mean inference time
per image (network + fusion; the first image is a warm-up and is not timed) and the peak memory: the
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

SETTINGS = ("cropformer", "mask2former", "mask2former_hr")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def setting_config(args: argparse.Namespace, name: str) -> tuple[str, list[str]]:
    """(config, overrides) of a setting."""
    if name == "cropformer":
        config, weights, extra = args.cropformer_config, args.cropformer_weights, []
    else:
        config, weights = args.mask2former_config, args.mask2former_weights
        extra = ["segmenter.short_side=0"] if name == "mask2former_hr" else []
    return config, extra + ([f"segmenter.checkpoint={weights}"] if weights else [])


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
    for k, (image_id, path) in enumerate(zip(ids, paths)):
        image = load_image(path)
        size = image.shape[:2]
        start = time.perf_counter()
        fused = segmenter.fuse(image)
        seconds = time.perf_counter() - start
        if k > 0 or len(ids) == 1:
            times.append(seconds)
        for _, mask, score in fused.iter_masks():
            preds.append({"image_id": image_id, "segmentation": encode_rle(mask), "score": score})
        del fused, image
    peak = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        pred_file = Path(tmp) / "pred.json"
        pred_file.write_text(json.dumps(preds))
        gt, options = dataset.ground_truth("entity", ids, tmp)
        metrics = score_predictions([Predictions("entity", gt, str(pred_file), {**options, "variants": "H,L"})])
    views = len(segmenter.regions(*size))
    from esgkit.components.segmenters.cropformer.segmenter import resized_input_size

    c = segmenter.config
    return {"setting": args.worker, "config": config, "overrides": overrides, "images": len(ids),
            "image_size": list(size), "input_size": list(resized_input_size(*size, c.short_side, c.max_long_side)),
            "views": views, "APe_H": 100 * metrics["APe"], "APe_L": 100 * metrics["APe_L"],
            "AP50_H": 100 * metrics["AP50"], "seconds_per_image": sum(times) / len(times),
            "peak_rss_mb": peak, "inference_rss_mb": peak - base, "detections": len(preds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ShapesWorld-format folder (esgkit data shapesworld)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, default=8, help="0 = every image of the split")
    parser.add_argument("--cropformer-config", default="cropformer_tiny")
    parser.add_argument("--mask2former-config", default="mask2former_tiny")
    parser.add_argument("--cropformer-weights", default="")
    parser.add_argument("--mask2former-weights", default="")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ", ".join(SETTINGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0

    results: dict[str, dict[str, Any]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    for name in [s.strip() for s in args.settings.split(",") if s.strip()]:
        if name not in SETTINGS:
            parser.error(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
        cmd = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:15s} input {r['input_size'][0]}x{r['input_size'][1]} x{r['views']} views  "
              f"APe-H {r['APe_H']:5.1f}  APe-L {r['APe_L']:5.1f}  AP50-H {r['AP50_H']:5.1f}  "
              f"{r['seconds_per_image']:6.2f} s/img  peak RSS {r['peak_rss_mb']:6.0f} MB "
              f"(+{r['inference_rss_mb']:.0f} MB inference)", flush=True)

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
