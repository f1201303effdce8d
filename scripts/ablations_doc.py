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


def costs(folder: Path) -> dict:
    """A grid's cells done and in all, those taken from another grid (``--reuse``: the same computation,
    its time counted there), those resumed after a stop (a cell's status times its last attempt), the
    seconds its own done cells and its shared stage took, its stage-cache counts."""
    grid = _read(folder / "grid.json")
    seconds, done, reused, resumed = 0.0, 0, 0, 0
    for cell in grid.get("cells", []):
        status = _read(folder / "cells" / cell["folder"] / "status.json")
        if status.get("state") == "done":
            done += 1
            if status.get("reused_from"):
                reused += 1
            else:
                seconds += float(status.get("seconds") or 0.0)  # its last attempt's
                resumed += int(status.get("attempts") or 1) > 1
    cache = _read(folder / "summary.json").get("cache", {})
    return {"done": done, "total": len(grid.get("cells", [])), "reused": reused, "resumed": resumed, "cache": cache,
            "seconds": seconds + float(cache.get("stage_seconds", 0.0))}


def render_summary(results: Path) -> str:
    """Every exported grid's cells and costs in one table, with the totals."""
    lines = ["| results | cells done | of them taken from another grid | CPU time (min) | images segmented | "
             "segmentations reused |", "|---|---|---|---|---|---|"]
    keys = ("done", "total", "reused", "seconds", "misses", "hits")
    sums = dict.fromkeys(keys, 0.0)
    for folder in sorted(f for f in results.iterdir() if (f / "grid.json").is_file()):
        c = costs(folder)
        c |= {"misses": int(c["cache"].get("masks_misses", 0)), "hits": int(c["cache"].get("masks_hits", 0))}
        sums = {k: sums[k] + c[k] for k in keys}
        lines.append(f"| `{folder.name}` | {c['done']}/{c['total']} | {c['reused']} | {c['seconds'] / 60:.0f} | "
                     f"{c['misses']} | {c['hits']} |")
    lines.append(f"| all | {sums['done']:.0f}/{sums['total']:.0f} | {sums['reused']:.0f} | {sums['seconds'] / 60:.0f} "
                 f"({sums['seconds'] / 3600:.1f} h) | {sums['misses']:.0f} | {sums['hits']:.0f} |")
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
        metric = t["metrics"][0]
        body += (f"\n![{metric} per row]({link})\n\n*{metric} per row (`esgkit grid report`): bars our mean ± std, "
                 f"black ticks the paper's value.*\n")
    c = costs(folder)
    notes = [f"{c['reused']} taken from another grid's identical cells"] if c["reused"] else []
    notes += [f"{c['resumed']} resumed after a stop, counted from the resume"] if c["resumed"] else []
    taken = f" ({'; '.join(notes)})" if notes else ""
    line = (f"{c['done']} of {c['total']} cells done{taken}, {c['seconds'] / 60:.0f} minutes of CPU time (one "
            f"thread per cell or stage job: training, segmenting, evaluation; longer where one shared its core with "
            f"other work)")
    if c["cache"]:
        line += (f"; masks cache: {c['cache'].get('masks_misses', 0)} images segmented, "
                 f"{c['cache'].get('masks_hits', 0)} reused")
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
