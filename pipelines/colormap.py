"""The colormap pipeline: a segmenter then a colorizer — the first half of GELLA's input path, and a
quick way to see what any segmenter produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Colorizer, Colormap, EntityMasks, Pipeline, Segmenter
from esgkit.core.io import save_image, save_masks
from esgkit.core.visualize import draw_overlay


@dataclass
class ColormapResult:
    masks: EntityMasks
    colormap: Colormap


class ColormapPipeline(Pipeline):
    """Segment an image and paint each entity in its own colour."""

    slots = {"segmenter": "segmenter", "colorizer": "colorizer"}

    @dataclass
    class Config:
        alpha: float = 0.55  # overlay opacity

    def __init__(self, config: ColormapPipeline.Config, segmenter: Segmenter, colorizer: Colorizer) -> None:
        self.config, self.segmenter, self.colorizer = config, segmenter, colorizer

    def run(self, image: np.ndarray, masks: EntityMasks | None = None, image_id: str | None = None,
            **_: Any) -> ColormapResult:
        entities = self.segmenter.segment(image, annotation=masks, image_id=image_id)
        entities.check_image_size(image.shape[0], image.shape[1], what="segmenter output")
        return ColormapResult(entities, self.colorizer.colorize(entities))

    def write(self, result: ColormapResult, out_dir: str, image: np.ndarray) -> list[str]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "colormap.png", out / "overlay.png", out / "masks.json"]
        save_image(paths[0], result.colormap.image)
        order = np.argsort(result.masks.scores, kind="stable")
        overlay = draw_overlay(image, [result.masks.masks[i] for i in order],
                               [result.colormap.colors[i] for i in order], alpha=self.config.alpha)
        save_image(paths[1], overlay)
        save_masks(paths[2], result.masks)
        return [str(p) for p in paths]
