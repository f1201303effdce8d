"""The colormap pipeline: a segmenter then a colorizer — the first half of GELLA's input path, and a
quick way to see what any segmenter produces. On a dataset it predicts the segmenter's entity masks,
scored by class-agnostic entity AP (``entity`` evaluator: APe, APe_L, …)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esgkit.core import Colorizer, Colormap, Dataset, EntityMasks, Pipeline, Predictions, Segmenter
from esgkit.core.io import save_image, save_masks
from esgkit.core.outputs import atomic_write
from esgkit.core.types import encode_rle
from esgkit.layers.painting import draw_overlay


def entity_predictions(segmenter: Segmenter, dataset: Dataset, out_dir: str, max_images: int = 0,
                       progress: bool = False, variants: str = "H,L") -> Predictions:
    """Segment the first ``max_images`` samples (0 = all) and write the ``entity`` prediction file
    (``{image_id, segmentation, score}`` per entity) with its ground truth into ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    image_ids, preds = [], []
    for i in dataset.take(max_images, progress="segment" if progress else ""):
        sample = dataset[i]
        image_id = str(sample["image_id"])
        image_ids.append(image_id)
        result = segmenter.segment(sample["image"], annotation=sample.get("masks"), image_id=image_id)
        preds += [{"image_id": image_id, "segmentation": encode_rle(m), "score": float(s)}
                  for m, s in zip(result.masks, result.scores)]
    pred = atomic_write(folder / "entity_pred.json", json.dumps(preds))
    gt, options = dataset.ground_truth("entity", image_ids, str(folder))
    return Predictions("entity", gt, str(pred), {**options, "variants": variants}, name="entity")


def warn_no_entities(segmenter: Segmenter, image_id: str | None, consequence: str) -> None:
    """The one-line warning of a segmenter that found no entity in an image."""
    where = f"image {image_id!r}" if image_id else "the image"
    warnings.warn(f"the segmenter ({type(segmenter).__name__}) found no entity in {where}: {consequence}",
                  stacklevel=4)  # the caller of run (through the input check)


@dataclass
class ColormapResult:
    masks: EntityMasks
    colormap: Colormap


class ColormapPipeline(Pipeline):
    """Segment an image and paint each entity in its own colour."""

    slots = {"segmenter": "segmenter", "colorizer": "colorizer"}
    weights_key = "segmenter.checkpoint"
    trained_configs = ("cropformer_tiny", "mask2former_tiny", "sam_tiny")

    @dataclass
    class Config:
        alpha: float = 0.55  # overlay opacity

    def __init__(self, config: ColormapPipeline.Config, segmenter: Segmenter, colorizer: Colorizer) -> None:
        self.config, self.segmenter, self.colorizer = config, segmenter, colorizer

    def run(self, image: np.ndarray, masks: EntityMasks | None = None, image_id: str | None = None) -> ColormapResult:
        entities = self.segmenter.segment(image, annotation=masks, image_id=image_id)
        entities.check_image_size(image.shape[0], image.shape[1], what="segmenter output")
        if len(entities) == 0:
            warn_no_entities(self.segmenter, image_id, "the colormap is all black")
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

    def predict(self, dataset: Dataset, out_dir: str, *, max_images: int = 0, skip: Collection[str] = (),
                progress: bool = True) -> list[Predictions]:
        """The segmenter's entity masks (part ``entity``), for APe at full and low resolution."""
        if "entity" in skip:
            return []
        return [entity_predictions(self.segmenter, dataset, out_dir, max_images, progress)]


__all__ = ["ColormapPipeline", "ColormapResult", "entity_predictions", "warn_no_entities"]
