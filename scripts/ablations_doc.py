"""Regenerates the measured parts of ``docs/ablations.md`` from the exported grids in
``experiments/results/`` (``esgkit grid export``), so no number of the ESG ablation tables is typed
by hand and none goes stale when a grid is rerun or finished.

The page marks each generated part with the name of a results folder::

    <!-- generated: esg_table21 (scripts/ablations_doc.py) -->
    ...
    <!-- end generated: esg_table21 -->

and this script writes between the markers: the grid's table (ours as mean ± standard deviation over
the seeds, the paper's beside it), the bar plot of its first metric, how many cells are done, the
time the done cells took (one thread each) and the grid's stage-cache counts. The part named
``costs`` is every exported grid's cells, time and cache counts in one table, with the totals.

    python scripts/ablations_doc.py            # rewrite the generated parts
    python scripts/ablations_doc.py --check    # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from generated_blocks import blocks, write_or_check  # scripts/generated_blocks.py

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ablations.md"
RESULTS = ROOT / "experiments" / "results"
SCRIPT = "ablations_doc"
SUMMARY = "costs"  # the block with every grid's costs (not a results folder)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _shown(folder: Path) -> str:
    """The folder as the page names it: relative to the project when it is inside."""
    return folder.resolve().relative_to(ROOT).as_posix() if folder.resolve().is_relative_to(ROOT) else str(folder)


def costs(folder: Path) -> tuple[int, int, float, dict]:
    """A grid's cells done, cells in all, seconds its done cells took, and its stage-cache counts."""
    grid = _read(folder / "grid.json")
    seconds, done = 0.0, 0
    for cell in grid.get("cells", []):
        status = _read(folder / "cells" / cell["folder"] / "status.json")
        if status.get("state") == "done":
            done += 1
            seconds += float(status.get("seconds") or 0.0)
    return done, len(grid.get("cells", [])), seconds, _read(folder / "summary.json").get("cache", {})


def render_summary(results: Path) -> str:
    """Every exported grid's cells and costs in one table, with the totals."""
    lines = ["| results | cells done | cell time (min) | images segmented | segmentations reused |",
             "|---|---|---|---|---|"]
    sums = [0, 0, 0.0, 0, 0]
    for folder in sorted(f for f in results.iterdir() if (f / "grid.json").is_file()):
        done, total, seconds, cache = costs(folder)
        row = [done, total, seconds, int(cache.get("masks_misses", 0)), int(cache.get("masks_hits", 0))]
        sums = [a + b for a, b in zip(sums, row)]
        lines.append(f"| `{folder.name}` | {done}/{total} | {seconds / 60:.0f} | {row[3]} | {row[4]} |")
    lines.append(f"| all | {sums[0]}/{sums[1]} | {sums[2] / 60:.0f} ({sums[2] / 3600:.1f} h) | {sums[3]} | {sums[4]} |")
    return "\n".join(lines) + "\n"


def render(folder: Path, page: Path = DOC) -> str:
    """One grid's table, the plot of its first metric (linked relative to ``page``) and its costs, as markdown."""
    from esgkit.experiments.grid.report import markdown, safe_name, table

    if not (folder / "grid.json").is_file():
        return f"*(not run yet: no `{_shown(folder)}`)*\n"
    t = table(folder)
    body = markdown(t).split("\n", 2)[2]  # without the "# name" heading
    plot = folder / "plots" / f"{safe_name(t['metrics'][0])}.png" if t["metrics"] else None
    if plot is not None and plot.is_file():
        link = Path(os.path.relpath(plot.resolve(), page.resolve().parent)).as_posix()
        body += (f"\n![{t['metrics'][0]} per row]({link})\n\n*{t['metrics'][0]} per row (`esgkit grid report`): bars our "
                 f"mean ± std, black ticks the paper's value.*\n")
    done, total, seconds, cache = costs(folder)
    line = (f"{done} of {total} cells done, {seconds / 60:.0f} minutes of cell time (one thread per "
            f"cell, training and evaluation; longer where a cell shared its core with other work)")
    if cache:
        line += (f"; masks cache: {cache.get('masks_misses', 0)} images segmented, "
                 f"{cache.get('masks_hits', 0)} reused")
    return f"{body}\n{line}. Results: `{_shown(folder)}`.\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part differs")
    args = ap.parse_args(argv)
    names = list(blocks(args.doc.read_text(), SCRIPT))
    if not names:
        ap.error(f"{args.doc} has no generated part (<!-- generated: NAME (scripts/ablations_doc.py) -->)")
    parts = {name: render_summary(args.results) if name == SUMMARY else render(args.results / name, args.doc)
             for name in names}
    status = write_or_check(args.doc, SCRIPT, parts, args.check)
    if not args.check:
        print(f"rewrote {names} in {args.doc}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
