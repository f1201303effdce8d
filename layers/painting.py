"""Painting masks: a colormap (one colour per entity, the colorizers' output) and overlay pictures for
people to read — each mask outlined in a palette colour (with a thin contrasting halo, so the line
reads on any background) over a light fill, labels placed where they neither overlap nor leave the
image, and a legend strip. The fill is kept light so that a mask's colour does not become the
object's apparent colour (an orange circle under a red tint looks red)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from esgkit.core.types import Colormap, EntityMasks

Color = tuple[int, int, int]
Box = tuple[int, int, int, int]

PALETTE: tuple[Color, ...] = (
    (232, 24, 72), (152, 24, 255), (0, 232, 0), (255, 192, 0), (0, 128, 248), (0, 224, 168), (255, 120, 224),
    (88, 120, 0), (168, 96, 32), (0, 200, 255), (255, 152, 160), (176, 216, 16), (255, 96, 0), (224, 200, 120),
    (136, 96, 160), (255, 0, 232), (144, 72, 208), (16, 176, 56), (24, 128, 88), (255, 0, 144),
)
"""Twenty overlay colours, the most distinct first (cycled beyond twenty). Chosen once by Glasbey's
greedy method: from the RGB cube in steps of 8, vivid mid-light colours only (CIELAB L* 45–82,
chroma ≥ 40, so a dark halo and white or black text read on each), each next colour the one farthest
(ΔE) from those already chosen and from black, white and grey. Pairwise ΔE ≥ 35 and RGB distance ≥ 54
(tests/layers/test_painting.py)."""

FILL_ALPHA = 0.2
"""Opacity of a mask's fill: light, so the object's own colour still shows through. A mask over
``LARGE`` of the image (sky, water) is filled at half of it: its tint would recolour much of the picture."""
LARGE = 0.1
OUTLINE_WIDTH = 2
"""Width in pixels of a mask's outline (inside the mask; a 1-pixel halo lines it on both sides)."""
DARK, LIGHT = (16, 16, 16), (248, 248, 248)


def palette_color(k: int) -> Color:
    return PALETTE[k % len(PALETTE)]


def contrast(color: Sequence[int]) -> Color:
    """Black-ish or white-ish, whichever reads on ``color`` (halos, label text)."""
    r, g, b = (int(v) for v in color[:3])
    return DARK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else LIGHT


def paint(masks: EntityMasks, colors: np.ndarray) -> Colormap:
    """Paint each entity's colour; ascending score order so the higher score wins overlaps."""
    h, w = masks.image_size
    image = np.zeros((h, w, 3), np.uint8)
    for i in np.argsort(masks.scores, kind="stable"):
        image[masks.masks[i]] = colors[i]
    return Colormap(image, colors)


def erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """``mask`` shrunk by ``steps`` pixels (4-neighbourhood; the image border does not erode)."""
    m = np.asarray(mask, bool)
    for _ in range(steps):
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        m = inner
    return m


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    return ~erode(~np.asarray(mask, bool), steps)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner boundary of a bool mask, ``width`` pixels wide."""
    m = np.asarray(mask, bool)
    return m & ~erode(m, width)


def _crop(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``pad`` (within the image); None when empty."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)))


def font_for(height: int, width: int) -> Any:
    """The label font, sized to the image (10 px at 400 px and below, growing with it)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(10, round(min(height, width) / 40)))
    except (TypeError, OSError, ImportError, AttributeError):  # an old Pillow, or no FreeType
        return ImageFont.load_default()


def label_size(text: str, font: Any, pad: int = 2) -> tuple[int, int]:
    """(width, height) of a label box holding ``text``."""
    left, _, right, _ = font.getbbox(text)
    return right - min(left, 0) + 2 * pad, font.getbbox("Hgjy|")[3] + 2 * pad


def draw_label(draw: Any, box: Box, text: str, color: Sequence[int], font: Any, pad: int = 2) -> None:
    """``text`` on a box filled with ``color``, in black or white, with a thin contrasting border."""
    x0, y0, x1, y1 = box
    fill = tuple(int(v) for v in color)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill, outline=contrast(fill))
    draw.text((x0 + pad - min(font.getbbox(text)[0], 0), y0 + pad), text, fill=contrast(fill), font=font)


def anchor_of(mask: np.ndarray, size: tuple[int, int] | None = None) -> tuple[float, float] | None:
    """Where a mask's label goes first: its centroid, or the mask pixel nearest to it when the
    centroid falls outside (a ring, a crescent); for a mask too small to hold the ``size`` (width,
    height) label, just above it (below at the image's top), so the label does not hide it. None
    for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    cx, cy = xs.mean(), ys.mean()
    if size is not None and (size[0] > xs.max() - xs.min() + 1 or size[1] > ys.max() - ys.min() + 1):
        above = ys.min() - size[1] / 2 - 2
        return float(cx), float(above if above >= size[1] / 2 else ys.max() + size[1] / 2 + 3)
    if mask[int(cy), int(cx)]:
        return float(cx), float(cy)
    k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return float(xs[k]), float(ys[k])


def place_labels(anchors: Sequence[tuple[float, float] | None], sizes: Sequence[tuple[int, int]],
                 bounds: tuple[int, int], gap: int = 1, reach: int | None = None) -> list[Box | None]:
    """Greedy label placement, in the given order (the first claim space first): each (width, height)
    label is centred on its (x, y) anchor, or moved to the nearest free spot within ``reach`` pixels
    (default: its width plus three heights), always clamped into ``bounds`` (height, width). Returns
    boxes (x0, y0, x1, y1), ends exclusive, at least ``gap`` pixels apart, inside the image; None
    for a label with no anchor, too big for the image or with no free spot (the legend names it)."""
    h, w = bounds
    placed = np.zeros((0, 4), np.int64)
    out: list[Box | None] = []
    for anchor, (lw, lh) in zip(anchors, sizes):
        if anchor is None or lw > w or lh > h:
            out.append(None)
            continue
        r = reach if reach is not None else lw + 3 * lh
        step = max(2, lh // 2)
        dx, dy = (a.ravel() for a in np.meshgrid(np.arange(-r, r + 1, step), np.arange(-r, r + 1, step)))
        order = np.argsort(dx * dx + dy * dy, kind="stable")
        x0 = np.clip(round(anchor[0] - lw / 2) + dx[order], 0, w - lw)
        y0 = np.clip(round(anchor[1] - lh / 2) + dy[order], 0, h - lh)
        boxes = np.stack([x0, y0, x0 + lw, y0 + lh], 1)
        clash = ((boxes[:, None, 0] < placed[None, :, 2] + gap) & (placed[None, :, 0] < boxes[:, None, 2] + gap)
                 & (boxes[:, None, 1] < placed[None, :, 3] + gap) & (placed[None, :, 1] < boxes[:, None, 3] + gap))
        free = np.nonzero(~clash.any(1))[0]
        if not len(free):
            out.append(None)
            continue
        box = boxes[free[0]]
        placed = np.vstack([placed, box[None]])
        out.append((int(box[0]), int(box[1]), int(box[2]), int(box[3])))
    return out


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    colors: Sequence[Sequence[int]],
    labels: Sequence[str] | None = None,
    legend: Sequence[tuple[str, Sequence[int]]] | None = None,
    alpha: float = FILL_ALPHA,
    label_order: Sequence[int] | None = None,
) -> np.ndarray:
    """Each mask filled lightly in its colour (opacity ``alpha``, halved over ``LARGE`` of the image;
    later masks over earlier ones) and outlined (``OUTLINE_WIDTH`` px, with a 1-px contrasting halo on
    both sides); ``labels`` (one per mask, "" for none) placed by ``place_labels`` in ``label_order``
    (default: as given); ``legend`` rows (text, colour) in a white strip on the right. Returns uint8
    (H', W', 3): the image's size without a legend."""
    from PIL import Image, ImageDraw

    image = np.asarray(image, np.uint8)
    masks = [np.asarray(m, bool) for m in masks]
    h, w = image.shape[:2]
    layer = np.zeros((h, w, 3), np.float32)
    opacity = np.zeros((h, w, 1), np.float32)
    for m, c in zip(masks, colors):
        layer[m], opacity[m] = c, alpha if np.count_nonzero(m) <= LARGE * h * w else alpha / 2
    out = np.clip(np.rint((1 - opacity) * image + opacity * layer), 0, 255).astype(np.uint8)
    lines = []
    for m, c in zip(masks, colors):
        box = _crop(m, OUTLINE_WIDTH + 2)
        if box is None:
            continue
        sub = m[box]
        core = erode(sub, OUTLINE_WIDTH)
        halo = (dilate(sub) & ~sub) | (core & ~erode(core))
        out[box][halo] = contrast(c)
        lines.append((box, sub & ~core, c))
    for box, line, c in lines:  # every line over every halo: neighbours' halos never cut a line
        out[box][line] = c
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font = font_for(h, w)
    if labels:
        order = list(label_order) if label_order is not None else list(range(len(masks)))
        order = [i for i in order if labels[i]]
        sizes = [label_size(labels[i], font) for i in order]
        boxes = place_labels([anchor_of(masks[i], size) for i, size in zip(order, sizes)], sizes, (h, w))
        for i, box in zip(order, boxes):
            if box is not None:
                draw_label(draw, box, labels[i], colors[i], font)
    if legend:
        canvas = _with_legend(canvas, legend, font)
    return np.asarray(canvas)


def _with_legend(canvas: Any, legend: Sequence[tuple[str, Sequence[int]]], font: Any) -> Any:
    """``canvas`` with a white strip on its right: one row per (text, colour), a swatch and the text."""
    from PIL import Image, ImageDraw

    w, h = canvas.size
    _, row = label_size("Hg", font, pad=3)
    swatch = row - 6
    strip = 16 + swatch + max(label_size(text, font)[0] for text, _ in legend)
    full = Image.new("RGB", (w + strip, max(h, row * len(legend) + 8)), (255, 255, 255))
    full.paste(canvas, (0, 0))
    draw = ImageDraw.Draw(full)
    for k, (text, color) in enumerate(legend):
        y = 4 + k * row
        draw.rectangle((w + 6, y + 3, w + 6 + swatch, y + 3 + swatch), fill=tuple(int(v) for v in color), outline=DARK)
        draw.text((w + 12 + swatch, y + 3), text, fill=(0, 0, 0), font=font)
    return full


def distinct_colors(masks: Sequence[np.ndarray]) -> list[Color]:
    """A palette colour per mask, neighbours (bounding boxes within 2 px) differing while the palette
    allows: greedy, in order; a mask with every colour taken gets its neighbours' least used one."""
    boxes = []
    for m in masks:
        box = _crop(np.asarray(m, bool), 2)
        boxes.append((box[1].start, box[0].start, box[1].stop, box[0].stop) if box else (0, 0, 0, 0))
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    near = (b[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < b[:, None, 2]) & \
           (b[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < b[:, None, 3])
    picks: list[int] = []
    for i in range(len(b)):
        used = [picks[j] for j in np.nonzero(near[i, :i])[0]]
        free = [k for k in range(len(PALETTE)) if k not in used]
        picks.append(free[0] if free else min(range(len(PALETTE)), key=used.count))
    return [PALETTE[k] for k in picks]


def draw_entities(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = FILL_ALPHA) -> np.ndarray:
    """Every entity in its own palette colour (``distinct_colors``), filled lightly and outlined, no
    labels: what a segmenter found. uint8 (H, W, 3)."""
    return draw_overlay(image, masks, distinct_colors(masks), alpha=alpha)


__all__ = ["FILL_ALPHA", "LARGE", "OUTLINE_WIDTH", "PALETTE", "anchor_of", "contrast", "dilate", "distinct_colors",
           "draw_entities", "draw_label", "draw_overlay", "erode", "font_for", "label_size", "outline", "paint",
           "palette_color", "place_labels"]
