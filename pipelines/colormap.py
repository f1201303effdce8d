"""The colormap pipeline: a segmenter then a colorizer — the first half of GELLA's input path, and a
quick way to see what any segmenter produces. ``colormap.png`` is the colorizer's output (what GELLA's
colormap encoder sees); ``overlay.png`` is for people: every entity outlined in a distinct palette
colour over the image (``esgkit.layers.painting.draw_entities``). On a dataset it predicts the
segmenter's entity masks, scored by class-agnostic entity AP (``entity`` evaluator: APe, APe_L, …)."""

from __future__ import annotations

import dataclasses
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
from esgkit.layers.painting import FILL_ALPHA, draw_entities


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


def no_entity_hint(segmenter: Segmenter) -> str:
    """What to try when ``segmenter`` found no entity: for one that reads masks made elsewhere, check
    them; else a lower value of its own positive thresholds, or another segmenter."""
    if not segmenter.cacheable:  # ground_truth, from_files: the masks given are empty
        return "the masks it was given hold no entity; check --masks (or the mask files)"
    config = getattr(segmenter, "config", None)
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) \
        else {}
    keys = [f"segmenter.{k} (now {v})" for k, v in values.items() if "thresh" in k and isinstance(v, float) and v > 0]
    lower = f"a lower {' or '.join(keys)}, or " if keys else ""
    return f"try {lower}another segmenter (--segmenter NAME, e.g. sam_tiny or cropformer_tiny)"


def no_entities_message(segmenter: Segmenter, image_id: str | None, consequence: str) -> str:
    """The one line said when a segmenter found no entity in an image: what follows, what to try."""
    where = f"image {image_id!r}" if image_id else "the image"
    return (f"the segmenter ({type(segmenter).__name__}) found no entity in {where}: {consequence}; "
            f"{no_entity_hint(segmenter)}")


def warn_no_entities(segmenter: Segmenter, image_id: str | None, consequence: str) -> None:
    """Warn with ``no_entities_message``, pointing at the caller of the pipeline's run."""
    warnings.warn(no_entities_message(segmenter, image_id, consequence), stacklevel=4)  # through the input check


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
        alpha: float = FILL_ALPHA  # opacity of the fill in overlay.png (outlines are opaque)

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
        order = np.argsort(result.masks.scores, kind="stable")  # the higher score on top
        save_image(paths[1], draw_entities(image, [result.masks.masks[i] for i in order], alpha=self.config.alpha))
        save_masks(paths[2], result.masks)
        return [str(p) for p in paths]

    def summary(self, result: ColormapResult) -> str:
        """How many entities, their scores and how much of the image they cover ("" for none: ``run``
        has warned)."""
        masks = result.masks
        if len(masks) == 0:
            return ""
        scores, covered = np.asarray(masks.scores), masks.masks.any(0).mean()
        return (f"{len(masks)} entities (scores {scores.min():.2f} to {scores.max():.2f}) covering {covered:.0%} "
                "of the image")

    def predict(self, dataset: Dataset, out_dir: str, *, max_images: int = 0, skip: Collection[str] = (),
                progress: bool = True) -> list[Predictions]:
        """The segmenter's entity masks (part ``entity``), for APe at full and low resolution."""
        if "entity" in skip:
            return []
        return [entity_predictions(self.segmenter, dataset, out_dir, max_images, progress)]


__all__ = ["ColormapPipeline", "ColormapResult", "entity_predictions", "no_entities_message", "no_entity_hint", "warn_no_entities"]
