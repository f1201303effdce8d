"""Regenerates the measured parts of ``docs/ablations.md`` from the exported grids in
``experiments/results/`` (``esgkit grid export``), so no number of the ESG ablation tables is typed
by hand and none goes stale when a grid is rerun or finished.

The page marks each generated part with the name of a results folder::

    <!-- generated: esg_table21 (scripts/ablations_doc.py) -->
    ...
    <!-- end generated: esg_table21 -->

and this script writes between the markers: the grid's table (ours as mean ± standard deviation over
the seeds, the paper's beside it), how many cells are done, the time the done cells took (one
thread each) and the grid's stage-cache counts.

    python scripts/ablations_doc.py            # rewrite the generated parts
    python scripts/ablations_doc.py --check    # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generated_blocks import blocks, write_or_check  # scripts/generated_blocks.py

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ablations.md"
RESULTS = ROOT / "experiments" / "results"
SCRIPT = "ablations_doc"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _shown(folder: Path) -> str:
    """The folder as the page names it: relative to the project when it is inside."""
    return folder.resolve().relative_to(ROOT).as_posix() if folder.resolve().is_relative_to(ROOT) else str(folder)


def render(folder: Path) -> str:
    """One grid's table and its costs, as markdown."""
    from esgkit.experiments.grid.report import markdown, table

    if not (folder / "grid.json").is_file():
        return f"*(not run yet: no `{_shown(folder)}`)*\n"
    grid = _read(folder / "grid.json")
    body = markdown(table(folder)).split("\n", 2)[2]  # without the "# name" heading
    seconds, done = 0.0, 0
    for cell in grid["cells"]:
        status = _read(folder / "cells" / cell["folder"] / "status.json")
        if status.get("state") == "done":
            done += 1
            seconds += float(status.get("seconds") or 0.0)
    cache = _read(folder / "summary.json").get("cache", {})
    costs = (f"{done} of {len(grid['cells'])} cells done, {seconds / 60:.0f} minutes of cell time (one thread per "
             f"cell, training and evaluation; longer where a cell shared its core with other work)")
    if cache:
        costs += (f"; masks cache: {cache.get('masks_misses', 0)} images segmented, "
                  f"{cache.get('masks_hits', 0)} reused")
    return f"{body}\n{costs}. Results: `{_shown(folder)}`.\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part differs")
    args = ap.parse_args(argv)
    names = list(blocks(args.doc.read_text(), SCRIPT))
    if not names:
        ap.error(f"{args.doc} has no generated part (<!-- generated: NAME (scripts/ablations_doc.py) -->)")
    status = write_or_check(args.doc, SCRIPT, {name: render(args.results / name) for name in names}, args.check)
    if not args.check:
        print(f"rewrote {names} in {args.doc}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
