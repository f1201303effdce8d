"""The grid's stage cache, measured: an 8-cell eval-only grid of GELLA variants on one CropFormer
(``esg_tiny``: the shipped cropformer_tiny masks → the shipped gella_tiny_trained) against one cell alone.

Both are real ``esgkit grid`` runs in their own process, each into a fresh grid folder with a fresh mask
cache, on the same ShapesWorld images, with the same executor (``local``, ``--workers`` processes of
one thread each). The eight cells vary what GELLA does with the masks (``pipeline.threshold`` ×
``pipeline.min_iou``), so they share the segmenter: its masks are computed once per image (the cache's
misses) and read by every cell (its hits). Printed: both wall times, their ratio (target ≤ 1.3), and
the cache counts of the 8-cell grid. Usage::

    python scripts/benchmark_grid.py [--images 24] [--size 320x320] [--workers 2] [--keep DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
base: esg_tiny
data: {data}
skip: [{skip}]
grid:
{axes}
metrics: [AR, AR_th, AR_st, acc@0.5]
"""
EIGHT = "  pipeline.threshold: [0.3, 0.4, 0.5, 0.6]\n  pipeline.min_iou: [0.1, 0.2]"
ONE = "  pipeline.threshold: [0.5]\n  pipeline.min_iou: [0.1]"


def run_grid(spec: Path, out: Path, workers: int) -> tuple[float, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "esgkit.core.cli", "grid", str(spec), "--out", str(out),
                             "--workers", str(workers), "--no-progress"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"esgkit grid {spec} failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    return seconds, json.loads((out / "summary.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", default="320x320")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip", default="nouns,res,reconstruction",
                        help="parts of GELLA's evaluation not run (esgkit eval --skip)")
    parser.add_argument("--keep", help="keep the data and grid folders here")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from esgkit.datasets.shapesworld import generate

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="esgkit-grid-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    if not (data / "val").exists():
        generate(data, images=args.images, seed=1, size=args.size, split="val")
    figures = {"images": args.images, "size": args.size, "workers": args.workers}
    for name, axes in (("one", ONE), ("eight", EIGHT)):
        spec = root / f"{name}.yaml"
        spec.write_text(SPEC.format(data=data, skip=", ".join(args.skip.split(",")), axes=axes))
        out = root / f"{name}_grid_{int(time.time())}"
        seconds, summary = run_grid(spec, out, args.workers)
        figures[name] = {"wall_s": round(seconds, 2), "cells": len(summary["cells"]), "done": summary["done"],
                         "cache": summary["cache"]}
        print(f"{name:>5}: {len(summary['cells'])} cell(s) in {seconds:.1f} s wall; masks cache "
              f"{summary['cache']['masks_misses']} misses, {summary['cache']['masks_hits']} hits", flush=True)
    # the same one cell as a plain `esgkit eval` (no grid, no worker processes), for reference
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    skips = [w for part in args.skip.split(",") for w in ("--skip", part)]
    subprocess.run([sys.executable, "-m", "esgkit.core.cli", "eval", "esg_tiny", "--data", str(data), "--out",
                    str(root / f"eval_{int(time.time())}.json"), "--mask-cache", str(root / f"evalcache_{time.time()}"),
                    "--no-progress", *skips, "pipeline.threshold=0.5", "pipeline.min_iou=0.1"], env=env, check=True,
                   capture_output=True)
    figures["eval_alone_s"] = round(time.perf_counter() - start, 2)
    print(f"  one cell as a plain `esgkit eval` (1 thread): {figures['eval_alone_s']:.1f} s", flush=True)
    ratio = figures["eight"]["wall_s"] / figures["one"]["wall_s"]
    figures["ratio"] = round(ratio, 3)
    print(f"8-cell grid / 1-cell grid = {ratio:.2f}x (target <= 1.3); 8-cell grid / plain esgkit eval = "
          f"{figures['eight']['wall_s'] / figures['eval_alone_s']:.2f}x; {args.images} images, each segmented "
          f"{figures['eight']['cache']['masks_misses'] / args.images:.2f} times in the 8-cell grid")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
