"""Segmenters that read masks made elsewhere: a dataset's ground truth, or the output files of any
segmentation framework (COCO-RLE JSON or id-map PNG). These make GELLA's grounding half usable on
masks from anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esgkit.core import EntityMasks, Segmenter
from esgkit.core.errors import InputError
from esgkit.core.io import load_masks


class GroundTruthSegmenter(Segmenter):
    """Returns the annotation's masks (a dataset sample's ground truth, or ``--masks FILE``)."""

    cacheable = False

    @dataclass
    class Config:
        pass

    def __init__(self, config: GroundTruthSegmenter.Config) -> None:
        self.config = config

    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        if annotation is None:
            raise InputError(
                "segmenter ground_truth needs masks: pass --masks FILE (COCO-RLE JSON or id-map PNG) "
                "or run it on a dataset with annotations"
            )
        annotation.check_image_size(image.shape[0], image.shape[1])
        return annotation


class FromFilesSegmenter(Segmenter):
    """Masks from files written by any segmentation framework: ``path`` is one mask file, or a folder
    holding ``<image_id>.json`` / ``<image_id>.png`` per image."""

    cacheable = False

    @dataclass
    class Config:
        path: str = ""

    def __init__(self, config: FromFilesSegmenter.Config) -> None:
        self.config = config

    def _file_for(self, image_id: str | None) -> Path:
        root = Path(self.config.path)
        if not self.config.path:
            raise InputError("segmenter.path is empty: set it to a mask file or a folder of them")
        if root.is_file():
            return root
        if not root.is_dir():
            raise InputError(f"segmenter.path {root}: no such file or folder")
        if image_id is None:
            raise InputError(f"segmenter.path {root} is a folder, so the image id is needed to pick a file")
        for ext in (".json", ".png"):
            if (root / f"{image_id}{ext}").is_file():
                return root / f"{image_id}{ext}"
        raise InputError(f"no mask file for image {image_id!r} in {root} (looked for {image_id}.json and {image_id}.png)")

    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        path = self._file_for(image_id)
        masks = load_masks(path)
        masks.check_image_size(image.shape[0], image.shape[1], what=f"masks in {path}")
        return masks
