"""scripts/segmenter_card.py: the model card's measured parts are regenerated, never edited by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "segmenter_card.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, timeout=600)


def test_the_shipped_card_is_current():
    done = run("--check")
    assert done.returncode == 0, done.stderr  # stale: run python scripts/segmenter_card.py


def test_blocks_are_rewritten_and_checked(tmp_path):
    bench = {"args": {"data": "/d/sw2k", "split": "val"}, "ratios": {"APe_H_gap_vs_mask2former": 2.0, "time_ratio_vs_hr": 0.5},
             "results": {name: {"images": 3, "image_size": [64, 80], "input_size": [32, 40], "views": views,
                                "APe_H": ape, "APe_L": ape, "AP50_H": 50.0, "APs_L": float("nan"), "APm_L": 1.0,
                                "APl_L": 2.0, "APe_thin": 3.0, "seconds_per_image": 0.5, "peak_rss_mb": 100.0,
                                "inference_rss_mb": 10.0, "images_without_entities": 0}
                         for name, views, ape in (("cropformer", 5, 42.0), ("mask2former", 1, 40.0))}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    card = tmp_path / "README.md"
    card.write_text("# card\n<!-- generated: table_vi (scripts/segmenter_card.py) -->\nold figures\n"
                    "<!-- end generated: table_vi -->\nkept text\n")
    args = ("--card", str(card), "--benchmark", str(tmp_path / "bench.json"))
    assert run(*args, "--check").returncode == 1  # stale
    done = run(*args)
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "old figures" not in text and text.endswith("<!-- end generated: table_vi -->\nkept text\n")
    assert "| cropformer | 32x40 | 5 | 42.0 |" in text and "| +2.0 | yes |" in text and "| 0.50× | **no** |" in text
    assert "on 3 images of 80×64 (`sw2k`, split `val`)" in text
    assert run(*args, "--check").returncode == 0
    bad = run(*args, "--only", "nosuch")
    assert bad.returncode == 2 and "no generated block ['nosuch']" in bad.stderr
