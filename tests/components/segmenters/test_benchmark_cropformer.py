"""scripts/benchmark_cropformer.py: the four settings side by side (Table VI's columns) and the issue's ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "benchmark_cropformer.py"


def test_benchmark_prints_each_setting_and_the_ratios(tmp_path):
    from esgkit.datasets.shapesworld import generate

    data = generate(tmp_path / "data", images=2, seed=0, size=(160, 128), split="val")
    configs = {}
    for name in ("cropformer", "mask2former"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"pipeline: {{name: colormap}}\nsegmenter: {{name: {name}, short_side: 64, max_long_side: 96}}\n"
                        "colorizer: {name: random}\n")
        configs[name] = str(path)
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(data), "--max-images", "2", "--cropformer-config", configs["cropformer"],
         "--mask2former-config", configs["mask2former"], "--json", str(out), "--jobs", "2",
         "--mask2former-hr-config", ""],  # the mask2former config's weights run at the original resolution
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "time ratio" in done.stdout and "APe-H gap" in done.stdout
    assert "| setting | input | views | APe-H | APe-L | AP50-H | APe-S | APe-M | APe-L(arge) | APe-thin |" in done.stdout
    assert all(f"| {name} |" in done.stdout for name in ("cropformer", "mask2former", "mask2former_hr", "sam"))
    result = json.loads(out.read_text())
    rows = result["results"]
    assert rows["cropformer"]["views"] == 5 and rows["mask2former"]["views"] == 1
    assert rows["cropformer"]["input_size"] == rows["mask2former"]["input_size"] == [64, 80]
    assert rows["mask2former_hr"]["input_size"] == [128, 160]  # the original resolution
    assert rows["sam"]["input_size"] == [256, 256] and rows["sam"]["config"] == "sam_tiny"
    for row in rows.values():
        assert row["images"] == 2 and row["seconds_per_image"] > 0 and row["peak_rss_mb"] > 0
        for key in ("APe_H", "APe_L", "AP50_H", "APe_thin"):
            assert 0 <= row[key] <= 100, (key, row)
    ratios = result["ratios"]
    assert ratios["time_ratio_vs_hr"] == rows["cropformer"]["seconds_per_image"] / rows["mask2former_hr"]["seconds_per_image"]
