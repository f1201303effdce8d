"""The picture in docs/shapesworld.md: a high-resolution ShapesWorld scene, its panoptic map, a
full-resolution crop and the same crop after a trip through a 512² input, plus its caption.

    python -m esgkit.datasets.shapesworld_figure docs/images/shapesworld_scene.png 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .shapesworld_language import Describer
from .shapesworld_scene import Scene, make_scene

PANEL = 512


def colorize(id_map: np.ndarray) -> np.ndarray:
    """A fixed bright colour per segment id (uint8 H×W×3)."""
    ids = np.unique(id_map)
    palette = np.random.default_rng(1).integers(40, 256, (int(ids.max()) + 1, 3)).astype(np.uint8)
    return palette[id_map]


def _crop_box(scene: Scene, side: int) -> tuple[int, int]:
    """Top-left corner of a ``side``² crop holding the most thin-structure pixels."""
    thin = np.isin(scene.id_map, [e.id for e in scene.entities if e.category in ("wire", "fence")])
    h, w = thin.shape
    best, where = -1, (0, 0)
    for y in range(0, h - side + 1, side // 2):
        for x in range(0, w - side + 1, side // 2):
            n = int(thin[y:y + side, x:x + side].sum())
            if n > best:
                best, where = n, (y, x)
    return where


def make_figure(out: str | Path, seed: int = 1, size: int = 2048) -> str:
    """Write the figure PNG to ``out``; return the scene's narrative caption."""
    rng = np.random.default_rng([seed, 0])
    scene = make_scene(rng, size, size)
    caption = "".join(p.text for p in Describer(scene, rng).narrative())
    full = Image.fromarray(scene.image)
    small = full.resize((PANEL, PANEL), Image.BILINEAR)
    pan = Image.fromarray(colorize(scene.id_map)).resize((PANEL, PANEL), Image.NEAREST)
    y, x = _crop_box(scene, PANEL)
    crop = full.crop((x, y, x + PANEL, y + PANEL))
    f = PANEL / size  # what a 512² input keeps of that crop, shown at the crop's scale
    lossy = small.crop((int(x * f), int(y * f), int((x + PANEL) * f), int((y + PANEL) * f))).resize((PANEL, PANEL), Image.BILINEAR)
    canvas = Image.new("RGB", (4 * PANEL + 30, PANEL + 28), "white")
    draw = ImageDraw.Draw(canvas)
    labels = [f"scene ({size}x{size}, shown downscaled)", "panoptic map", "crop at full resolution",
              f"same crop from a {PANEL}x{PANEL} input"]
    for k, (im, label) in enumerate(zip([small, pan, crop, lossy], labels)):
        canvas.paste(im, (k * (PANEL + 10), 28))
        draw.text((k * (PANEL + 10) + 4, 8), label, fill="black")
    draw.rectangle([x * f, 28 + y * f, (x + PANEL) * f, 28 + (y + PANEL) * f], outline="red", width=3)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the picture faithful and the file small enough for a repository
    canvas.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    return caption


if __name__ == "__main__":  # pragma: no cover
    print(make_figure(sys.argv[1] if len(sys.argv) > 1 else "shapesworld_scene.png",
                      seed=int(sys.argv[2]) if len(sys.argv) > 2 else 1))
