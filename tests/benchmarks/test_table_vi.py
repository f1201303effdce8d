"""The paper's Table VI side by side as a registered benchmark: the shipped CropFormer, Mask2Former at the
same input and at the original resolution, and the tiny SAM, on the same images, through
``scripts/benchmark_cropformer.py`` (each setting in its own process; APe-H/L, AP50, APe by size and on
thin entities, s / image, peak and inference RSS, the paper's ratios).

    pytest tests/benchmarks/test_table_vi.py --benchmark-enable -s        # prints the table

By default it generates 2 held-out ShapesWorld images at 512² (seed 97, a seed no shipped model trained
on) so that it fits the test suite; ``ESGKIT_TABLE_VI_DATA=DIR`` (an ``esgkit data shapesworld`` folder,
split ``val``) and ``ESGKIT_TABLE_VI_IMAGES=N`` run it at full size. The model card's figures are the
script on 50 held-out 2048² images (models/cropformer_tiny/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_cropformer.py"


def test_table_vi_side_by_side(benchmark, tmp_path):
    data = os.environ.get("ESGKIT_TABLE_VI_DATA", "")
    images = os.environ.get("ESGKIT_TABLE_VI_IMAGES", "2")
    if not data:
        from esgkit.datasets.shapesworld import generate

        data = str(generate(tmp_path / "data", images=2, seed=97, size=(512, 512), split="val"))
    out = tmp_path / "table_vi.json"

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), "--data", data, "--max-images", images, "--json", str(out),
                               "--jobs", "2"],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    done = benchmark.pedantic(run, rounds=1, iterations=1)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    rows = json.loads(out.read_text())["results"]
    assert list(rows) == ["cropformer", "mask2former", "mask2former_hr", "sam"]
    assert all(r["checkpoint"].endswith(".safetensors") for r in rows.values())  # the shipped weights, not random ones
    benchmark.extra_info.update({name: {k: r[k] for k in ("APe_H", "seconds_per_image", "inference_rss_mb")}
                                 for name, r in rows.items()})
