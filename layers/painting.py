"""Painting masks: a colormap (one colour per entity, the colorizers' output) and overlay pictures
(masks blended over the image, optional labels and a legend)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from esgkit.core.types import Colormap, EntityMasks


def paint(masks: EntityMasks, colors: np.ndarray) -> Colormap:
    """Paint each entity's colour; ascending score order so the higher score wins overlaps."""
    h, w = masks.image_size
    image = np.zeros((h, w, 3), np.uint8)
    for i in np.argsort(masks.scores, kind="stable"):
        image[masks.masks[i]] = colors[i]
    return Colormap(image, colors)


def blend(image: np.ndarray, colormap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a colour image over ``image`` where it is not black."""
    image = np.asarray(image, np.float32)
    colormap = np.asarray(colormap, np.float32)
    painted = colormap.any(axis=2, keepdims=True)
    out = np.where(painted, (1 - alpha) * image + alpha * colormap, image)
    return np.clip(out, 0, 255).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner boundary of a bool mask."""
    m = np.asarray(mask, bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def draw_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    colors: Sequence[Sequence[int]],
    labels: Sequence[str] | None = None,
    legend: Sequence[tuple[str, Sequence[int]]] | None = None,
    alpha: float = 0.55,
) -> np.ndarray:
    """Blend each mask in its colour with an outline, put ``labels`` at mask centroids and a legend
    (label, colour) in a strip on the right. Returns uint8 (H, W', 3)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    layer = np.zeros((h, w, 3), np.uint8)
    edges = np.zeros((h, w), bool)
    for m, c in zip(masks, colors):
        layer[m] = c
        edges |= outline(m)
    out = blend(image, layer, alpha)
    out[edges] = 255
    canvas = Image.fromarray(out)
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    if labels:
        for m, c, text in zip(masks, colors, labels):
            ys, xs = np.nonzero(m)
            if not len(ys) or not text:
                continue
            x, y = int(xs.mean()), int(ys.mean())
            box = draw.textbbox((x, y), text, font=font)
            draw.rectangle(box, fill=(0, 0, 0))
            draw.text((x, y), text, fill=tuple(int(v) for v in c), font=font)
    if legend:
        row = 14
        strip_w = max(140, 10 + max(int(draw.textlength(t, font=font)) for t, _ in legend) + 24)
        full = Image.new("RGB", (w + strip_w, max(h, row * len(legend) + 8)), (255, 255, 255))
        full.paste(canvas, (0, 0))
        d = ImageDraw.Draw(full)
        for k, (text, c) in enumerate(legend):
            y = 4 + k * row
            d.rectangle((w + 6, y + 2, w + 16, y + 12), fill=tuple(int(v) for v in c))
            d.text((w + 22, y), text, fill=(0, 0, 0), font=font)
        canvas = full
    return np.asarray(canvas)


__all__ = ["blend", "draw_overlay", "outline", "paint"]
