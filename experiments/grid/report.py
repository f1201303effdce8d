"""``esgkit grid report DIR``: the grid's table (rows × metrics; mean ± std over seeds when seeds are an
axis) as ``report.md`` and ``report.csv``, and one bar plot per metric, ``plots/<metric>.png`` (drawn
with Pillow). A spec's ``paper:`` block puts the paper's numbers beside ours (``<metric> (paper)``).
Cells that are not done show as ``—`` and are counted in the ``cells`` column.

When seeds are an axis, ``report.md`` also compares every row with the spec's ``baseline:`` row (default:
the first) by one rule, so a table's verdicts are computed, not judged by eye. Our difference counts only
when it exceeds the larger of the two rows' seed gaps (|seed a − seed b|; the range of the seeds when more
than two). The paper's difference is its direction when it exceeds ``PAPER_TIE`` (half a point: its
numbers are rounded to a tenth of a point, and it calls smaller gaps a tie). The verdict:

- beyond the gap: *confirmed* / *contradicted* where the paper has a direction, *higher* / *lower
  (paper: tie)* where it ties, *higher* / *lower* where it gives no number;
- within the gap: *not resolved* where the paper has a direction, *no difference, as the paper* where
  it ties, *no difference* where it gives no number.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from pathlib import Path
from typing import Any

from esgkit.core.errors import InputError
from esgkit.core.outputs import atomic_path, atomic_write, claim_folder

from esgkit.core.json_input import read_state

from .cells import read_status

HIDDEN = {"images"}
PAPER_TIE = 0.005  # a paper difference at most this (as a fraction) is the paper's tie


def table(grid_dir: str | Path) -> dict[str, Any]:
    """``{"rows": [{"row", "n", "done", metric: (mean, std) ..., "gaps": {metric: max − min}}], "metrics": [...],
    "paper": {...}, "seeds": bool, "baseline": row}``."""
    out = Path(grid_dir)
    grid = read_state(out / "grid.json")
    if grid is None:
        raise InputError(f"grid folder {out}: no readable grid.json; give a folder written by `esgkit grid`")
    rows: dict[str, dict[str, Any]] = {}
    metric_order: list[str] = list(grid.get("metrics") or [])
    chosen = bool(metric_order)
    for cell in grid["cells"]:
        folder = out / "cells" / cell["folder"]
        row = rows.setdefault(cell["row"], {"row": cell["row"], "n": 0, "done": 0, "values": {}})
        row["n"] += 1
        metrics = (read_state(folder / "metrics.json") or {}).get("metrics") if read_status(folder)["state"] == "done" \
            else None
        if not metrics:
            continue
        row["done"] += 1
        for key, value in metrics.items():
            if key in HIDDEN or not isinstance(value, (int, float)):
                continue
            if not chosen and key not in metric_order:
                metric_order.append(key)
            row["values"].setdefault(key, []).append(float(value))
    result = []
    for row in rows.values():
        entry: dict[str, Any] = {"row": row["row"], "n": row["n"], "done": row["done"], "gaps": {}}
        for key in metric_order:
            values = [v for v in row["values"].get(key, []) if not math.isnan(v)]
            entry[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) \
                if values else None
            if len(values) > 1:
                entry["gaps"][key] = max(values) - min(values)
        result.append(entry)
    baseline = grid.get("baseline") or (result[0]["row"] if result else None)
    return {"rows": result, "metrics": metric_order, "paper": grid.get("paper") or {},
            "seeds": bool(grid.get("seeds")), "name": grid.get("name", "grid"), "baseline": baseline}


def differences(t: dict[str, Any]) -> list[dict[str, Any]]:
    """Every other row against the baseline row, per metric: ``{"row", metric: {"ours", "gap", "paper",
    "verdict"} | None}`` by the rule in this module's docstring. None where a row lacks two done seeds;
    ``{"verdict": "no value"}`` where both have them but the metric has none (e.g. APs without small entities)."""
    rows = {r["row"]: r for r in t["rows"]}
    base = rows.get(t.get("baseline"))
    if not t["seeds"] or base is None:
        return []
    paper_base = t["paper"].get(base["row"], {})
    out = []
    for row in t["rows"]:
        if row is base:
            continue
        entry: dict[str, Any] = {"row": row["row"]}
        for m in t["metrics"]:
            if m not in row["gaps"] or m not in base["gaps"]:  # a gap needs two seeds' values
                entry[m] = {"verdict": "no value"} if min(row["done"], base["done"]) > 1 else None
                continue
            ours, gap = row[m][0] - base[m][0], max(row["gaps"][m], base["gaps"][m])
            paper_row = t["paper"].get(row["row"], {})
            paper = paper_row[m] - paper_base[m] if m in paper_row and m in paper_base else None
            entry[m] = {"ours": ours, "gap": gap, "paper": paper, "verdict": _verdict(ours, gap, paper)}
        out.append(entry)
    return out


def _verdict(ours: float, gap: float, paper: float | None) -> str:
    """The rule in this module's docstring: ours against its seed gap, the paper's against PAPER_TIE."""
    tie = paper is not None and abs(paper) <= PAPER_TIE
    if abs(ours) <= gap:
        return "no difference" if paper is None else "no difference, as the paper" if tie else "not resolved"
    side = "higher" if ours > 0 else "lower"
    if paper is None:
        return side
    if tie:
        return f"{side} (paper: tie)"
    return "confirmed" if (ours > 0) == (paper > 0) else "contradicted"


def _difference_text(d: dict[str, Any] | None) -> str:
    if d is None:
        return "— (needs two seeds)"
    if "ours" not in d:
        return f"— ({d['verdict']})"
    paper = f"; paper {d['paper']:+.3f}" if d["paper"] is not None else ""
    return f"{d['ours']:+.3f} (gap {d['gap']:.3f}{paper}): {d['verdict']}"


def _fmt(value: tuple[float, float] | None, seeds: bool) -> str:
    if value is None:
        return "—"
    return f"{value[0]:.4f} ± {value[1]:.4f}" if seeds else f"{value[0]:.4f}"


def _columns(t: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, "ours" | "paper") in table order: a paper column right after its metric when any row has one."""
    paper_metrics = {m for v in t["paper"].values() for m in v}
    cols = []
    for m in t["metrics"]:
        cols.append((m, "ours"))
        if m in paper_metrics:
            cols.append((m, "paper"))
    return cols


def markdown(t: dict[str, Any]) -> str:
    cols = _columns(t)
    head = ["cell", "cells done", *(m if kind == "ours" else f"{m} (paper)" for m, kind in cols)]
    lines = [f"# {t['name']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in t["rows"]:
        paper = t["paper"].get(row["row"], {})
        cells = [row["row"], f"{row['done']}/{row['n']}"]
        for m, kind in cols:
            cells.append(_fmt(row[m], t["seeds"]) if kind == "ours" else
                         (f"{paper[m]:.4f}" if m in paper else "—"))
        lines.append("| " + " | ".join(cells) + " |")
    if t["seeds"]:
        lines += ["", "Mean ± standard deviation over the seeds of each row."]
    diffs = differences(t)
    if diffs:
        lines += ["", f"Each row minus the baseline row, {t['baseline']}: ours (the larger seed gap of the two rows; "
                  "the paper's): the verdict. Ours counts beyond the seed gap, the paper's beyond half a point "
                  "(`esgkit grid report`'s rule).", "",
                  "| row | " + " | ".join(t["metrics"]) + " |", "|" + "---|" * (len(t["metrics"]) + 1)]
        for d in diffs:
            lines.append(f"| {d['row']} | " + " | ".join(_difference_text(d[m]) for m in t["metrics"]) + " |")
    return "\n".join(lines) + "\n"


def csv_text(t: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    cols = _columns(t)
    head = ["cell", "n", "done"]
    for m, kind in cols:
        head += [f"{m}_paper"] if kind == "paper" else ([f"{m}_mean", f"{m}_std"] if t["seeds"] else [m])
    writer.writerow(head)
    for row in t["rows"]:
        paper = t["paper"].get(row["row"], {})
        line: list[Any] = [row["row"], row["n"], row["done"]]
        for m, kind in cols:
            if kind == "paper":
                line.append(paper.get(m, ""))
            elif row[m] is None:
                line += ["", ""] if t["seeds"] else [""]
            else:
                line += [repr(row[m][0]), repr(row[m][1])] if t["seeds"] else [repr(row[m][0])]
        writer.writerow(line)
    return buffer.getvalue()


def bar_plot(t: dict[str, Any], metric: str, path: Path) -> None:
    """Bars of ``metric`` per row (with ± std whiskers), the paper's value as a black tick."""
    from PIL import Image, ImageDraw

    rows = t["rows"]
    bar, gap, left, top, height = 36, 14, 60, 30, 220
    width = left + len(rows) * (bar + gap) + gap
    image = Image.new("RGB", (max(width, 240) + 120, top + height + 230), "white")
    draw = ImageDraw.Draw(image)
    values = [r[metric][0] + r[metric][1] for r in rows if r[metric] is not None]
    values += [t["paper"].get(r["row"], {}).get(metric, 0.0) for r in rows]
    scale = max([1e-9, *values])
    y0 = top + height
    draw.text((left, 8), f"{metric} per cell", fill="black")
    draw.line([(left - 4, top), (left - 4, y0), (image.width - 8, y0)], fill="black")
    for frac in (0.0, 0.5, 1.0):
        y = y0 - frac * height
        draw.text((4, y - 6), f"{frac * scale:.3g}", fill="black")
    for k, row in enumerate(rows):
        x = left + gap + k * (bar + gap)
        if row[metric] is not None:
            mean, std = row[metric]
            draw.rectangle([x, y0 - mean / scale * height, x + bar, y0], fill=(70, 120, 200))
            if std:
                for y in (mean - std, mean + std):
                    draw.line([(x + bar / 2 - 5, y0 - y / scale * height), (x + bar / 2 + 5, y0 - y / scale * height)],
                              fill="black")
                draw.line([(x + bar / 2, y0 - (mean - std) / scale * height),
                           (x + bar / 2, y0 - (mean + std) / scale * height)], fill="black")
        paper = t["paper"].get(row["row"], {}).get(metric)
        if paper is not None:
            y = y0 - paper / scale * height
            draw.line([(x - 3, y), (x + bar + 3, y)], fill="black", width=3)
        label = row["row"] if len(row["row"]) <= 42 else row["row"][:39] + "..."
        text = Image.new("RGBA", (260, 12), (255, 255, 255, 0))
        ImageDraw.Draw(text).text((0, 0), label, fill="black")
        rotated = text.rotate(-60, expand=True)
        image.paste(rotated, (x, y0 + 4), rotated)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def safe_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric) or "metric"


def write_report(grid_dir: str | Path) -> list[Path]:
    """Write report.md, report.csv and plots/<metric>.png into the grid folder; returns the paths."""
    out = Path(grid_dir)
    t = table(out)
    grid = claim_folder(out, "grid")
    written = [atomic_write(out / "report.md", markdown(t)), atomic_write(out / "report.csv", csv_text(t))]
    for metric in t["metrics"]:
        path = out / "plots" / f"{safe_name(metric)}.png"
        bar_plot(t, metric, path)
        written.append(path)
    grid.record(*written)
    return written


__all__ = ["csv_text", "differences", "markdown", "table", "write_report"]
