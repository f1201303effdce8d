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
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ablations.md"
RESULTS = ROOT / "experiments" / "results"
BLOCK = re.compile(r"(<!-- generated: ([\w.-]+) \(scripts/ablations_doc.py\) -->\n)(.*?)(<!-- end generated: \2 -->)",
                   re.S)


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
    text = args.doc.read_text()
    current = {m.group(2): m.group(3) for m in BLOCK.finditer(text)}
    if not current:
        ap.error(f"{args.doc} has no generated part (<!-- generated: NAME (scripts/ablations_doc.py) -->)")
    renders = {name: render(args.results / name) for name in current}
    if args.check:
        stale = [name for name in current if renders[name] != current[name]]
        if stale:
            print(f"{args.doc}: stale generated parts {stale}; run python scripts/ablations_doc.py", file=sys.stderr)
            return 1
        print(f"{args.doc}: generated parts {list(current)} are current")
        return 0
    args.doc.write_text(BLOCK.sub(lambda m: m.group(1) + renders[m.group(2)] + m.group(4), text))
    print(f"rewrote {list(current)} in {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
