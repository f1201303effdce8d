"""Registers scikit-image's graph-based (Felzenszwalb) and superpixel (SLIC) segmentations as
class-agnostic esgkit segmenters. Everything a third party needs is in this file. Heavy imports
(NumPy, scikit-image) happen inside the methods, so ``esgkit list`` stays fast with the plugin
installed (or register ``"module:Class"`` strings, which are imported on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from esgkit.core import Segmenter, hookimpl

if TYPE_CHECKING:
    import numpy as np

    from esgkit.core import EntityMasks


def _labels_to_masks(labels: np.ndarray, min_area: int) -> EntityMasks:
    """One entity per label region of at least ``min_area`` pixels, larger regions first."""
    import numpy as np

    from esgkit.core import EntityMasks

    ids, counts = np.unique(labels, return_counts=True)
    keep = [(int(i), int(c)) for i, c in zip(ids, counts) if c >= min_area]
    keep.sort(key=lambda ic: -ic[1])
    h, w = labels.shape
    if not keep:
        return EntityMasks.empty(h, w)
    masks = np.stack([labels == i for i, _ in keep])
    total = float(h * w)
    scores = np.array([c / total for _, c in keep], np.float32)  # area share as a confidence proxy
    return EntityMasks(masks, scores, np.arange(1, len(keep) + 1))


class FelzenszwalbSegmenter(Segmenter):
    """Felzenszwalb–Huttenlocher graph segmentation (scikit-image)."""

    @dataclass
    class Config:
        scale: float = 400.0
        sigma: float = 0.8
        min_size: int = 200

    def __init__(self, config: FelzenszwalbSegmenter.Config) -> None:
        self.config = config

    def segment(self, image, annotation=None, image_id=None) -> EntityMasks:  # type: ignore[no-untyped-def]
        from skimage.segmentation import felzenszwalb

        labels = felzenszwalb(image, scale=self.config.scale, sigma=self.config.sigma, min_size=self.config.min_size)
        return _labels_to_masks(labels, self.config.min_size)


class SlicSegmenter(Segmenter):
    """SLIC superpixels (scikit-image): compact regions of similar colour."""

    @dataclass
    class Config:
        n_segments: int = 60
        compactness: float = 10.0
        min_area: int = 50

    def __init__(self, config: SlicSegmenter.Config) -> None:
        self.config = config

    def segment(self, image, annotation=None, image_id=None) -> EntityMasks:  # type: ignore[no-untyped-def]
        from skimage.segmentation import slic

        labels = slic(image, n_segments=self.config.n_segments, compactness=self.config.compactness, start_label=1)
        return _labels_to_masks(labels, self.config.min_area)


@hookimpl
def esgkit_register_components(register) -> None:  # type: ignore[no-untyped-def]
    register("segmenter", "felzenszwalb", FelzenszwalbSegmenter)
    register("segmenter", "slic", SlicSegmenter)
