"""scripts/ablations_doc.py: docs/ablations.md's tables are written from the exported grids, never by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ablations_doc.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_the_shipped_page_is_current():
    done = run("--check")
    assert done.returncode == 0, done.stderr  # stale: run python scripts/ablations_doc.py


def test_a_part_is_written_from_its_grid_and_checked(tmp_path):
    results = tmp_path / "results"
    grid = results / "g"
    cells = []
    for k, (row, seed, ar, state) in enumerate([("FC", 0, 0.6, "done"), ("FC", 1, 0.8, "done"),
                                                 ("MLP", 0, 0.5, "done"), ("MLP", 1, 0.9, "running")]):
        folder = grid / "cells" / f"c{k}"
        folder.mkdir(parents=True)
        reused = {"reused_from": "other/cells/c2"} if k == 2 else {}  # the same computation, done in another grid
        attempts = 2 if k == 1 else 1
        (folder / "status.json").write_text(json.dumps({"state": state, "seconds": 600.0, "attempts": attempts,
                                                        **reused}))
        (folder / "metrics.json").write_text(json.dumps({"metrics": {"AR": ar}}))
        cells.append({"folder": f"c{k}", "label": f"{row} seed={seed}", "row": row, "seed": seed})
    (grid / "grid.json").write_text(json.dumps({"name": "g", "cells": cells, "seeds": [0, 1], "metrics": ["AR"],
                                                "paper": {"FC": {"AR": 0.698}}}))
    cache = {"masks_hits": 8, "masks_misses": 2, "stage_seconds": 120.0}
    (grid / "summary.json").write_text(json.dumps({"cache": cache}))
    (grid / "plots").mkdir()
    (grid / "plots" / "AR.png").write_bytes(b"png")
    doc = tmp_path / "page.md"
    doc.write_text("intro\n<!-- generated: g (scripts/ablations_doc.py) -->\nold\n<!-- end generated: g -->\n"
                   "<!-- generated: missing (scripts/ablations_doc.py) -->\n<!-- end generated: missing -->\n"
                   "<!-- generated: costs (scripts/ablations_doc.py) -->\n<!-- end generated: costs -->\nend\n")
    args = ("--doc", str(doc), "--results", str(results))
    assert run(*args, "--check").returncode == 1
    done = run(*args)
    assert done.returncode == 0, done.stderr
    text = doc.read_text()
    assert "| FC | 2/2 | 0.7000 ± 0.1414 | 0.6980 |" in text, text
    assert "| MLP | 1/2 | 0.5000 ± 0.0000 | — |" in text, text
    assert ("3 of 4 cells done (1 taken from another grid's identical cells; 1 resumed after a stop, counted from "
            "the resume), 22 minutes of CPU time") in text and "2 images segmented, 8 reused" in text, text
    assert "![AR per row](results/g/plots/AR.png)" in text, text  # linked relative to the page
    assert "| `g` | 3/4 | 1 | 22 | 2 | 8 |" in text and "| all | 3/4 | 1 | 22 (0.4 h) | 2 | 8 |" in text, text  # costs
    assert "not run yet" in text and text.startswith("intro\n") and text.endswith("end\n"), text
    assert run(*args, "--check").returncode == 0
