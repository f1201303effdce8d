"""``esgkit grid report DIR``: the grid's table (rows × metrics; mean ± std over seeds when seeds are an
axis) as ``report.md`` and ``report.csv``, and one bar plot per metric, ``plots/<metric>.png`` (drawn
with Pillow). A spec's ``paper:`` block puts the paper's numbers beside ours (``<metric> (paper)``).
Cells that are not done show as ``—`` and are counted in the ``cells`` column."""

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


def table(grid_dir: str | Path) -> dict[str, Any]:
    """``{"rows": [{"row", "n", "done", metric: (mean, std) ...}], "metrics": [...], "paper": {...}, "seeds": bool}``."""
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
        entry = {"row": row["row"], "n": row["n"], "done": row["done"]}
        for key in metric_order:
            values = [v for v in row["values"].get(key, []) if not math.isnan(v)]
            entry[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) \
                if values else None
        result.append(entry)
    return {"rows": result, "metrics": metric_order, "paper": grid.get("paper") or {},
            "seeds": bool(grid.get("seeds")), "name": grid.get("name", "grid")}


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


__all__ = ["csv_text", "markdown", "table", "write_report"]
