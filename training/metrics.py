"""Reading a run's ``metrics.jsonl`` and drawing its loss curves as a PNG (Pillow only; matplotlib is
not a dependency), for model cards and the docs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from esgkit.core.errors import InputError

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def read_metrics(path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (a file or a run folder) of one split: ``train`` rows carry no
    ``split`` key, validation rows have ``"split": "val"``."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise InputError(f"{path} not found: is this a training run folder (esgkit train --out RUN)?")
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:  # the last row of a killed run, torn mid-write: not a row
                break
            raise InputError(f"{path}: line {i + 1} is not a JSON row") from None
    return [r for r in rows if isinstance(r, dict) and r.get("split", "train") == split]


def plot_metrics(path: str | Path, out: str | Path, keys: Sequence[str] = ("loss",), split: str = "train",
                 size: tuple[int, int] = (800, 450), log_y: bool = False) -> Path:
    """Draw ``keys`` against the step as a line chart PNG; returns ``out``."""
    rows = read_metrics(path, split)
    series = {k: [(r["step"], r[k]) for r in rows if k in r and math.isfinite(r[k])] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        raise InputError(f"{path}: no {split} rows with any of {list(keys)}")
    tf = (lambda y: math.log10(max(y, 1e-12))) if log_y else (lambda y: y)
    xs = [x for v in series.values() for x, _ in v]
    ys = [tf(y) for v in series.values() for _, y in v]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    w, h = size
    left, right, top, bottom = 70, 20, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(5):  # ticks
        fy = y0 + (y1 - y0) * i / 4
        _, py = px(x0, fy)
        label = f"{10 ** fy:.3g}" if log_y else f"{fy:.3g}"
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((4, py - 6), label, fill="black")
        fx = x0 + (x1 - x0) * i / 4
        qx, _ = px(fx, y0)
        draw.line([qx, h - bottom, qx, h - bottom + 4], fill="black")
        draw.text((qx - 10, h - bottom + 8), f"{fx:.0f}", fill="black")
    draw.text((w // 2 - 12, h - 16), "step", fill="black")
    for i, (key, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        line = [px(x, tf(y)) for x, y in points]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        else:
            draw.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=colour)
        draw.line([w - right - 110, top + 12 + 16 * i, w - right - 90, top + 12 + 16 * i], fill=colour, width=3)
        draw.text((w - right - 85, top + 6 + 16 * i), key, fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
