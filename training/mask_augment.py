"""Ground-truth entity masks perturbed the way a segmenter gets them wrong, so that GELLA trained on
annotations learns to ground on imperfect masks too (the ESG issue's robustness trials).

Measured on the shipped CropFormer's masks of 40 ShapesWorld training scenes
(``scripts/segmenter_errors.py``, table in docs/esg.md), most of its errors on mid-sized and small
segments are of four kinds, and each has an operation here:

* **merge**: an entity is joined with a touching neighbour of a similar size (within 4×);
* **split**: an entity is cut in two by a random straight line through its centre;
* **jitter**: an entity's border grows or shrinks by a few pixels (coarse masks);
* **drop**: an entity smaller than ``drop_below`` of the image is missing (missed small things;
  CropFormer missed none of the 128 segments larger than 5 % of the image in that table).

Merges and splits touch entities smaller than ``local_below`` of the image only: CropFormer merges
and splits neighbouring shapes, and rarely the background regions.

The operations draw from a ``numpy.random.Generator`` the caller seeds (``GellaTask.collate`` seeds
it from torch's checkpointed RNG, so ``--resume`` is exact). Targets of the perturbed masks come from
the same rule as a real segmenter's (``layers/overlap.assign_to_segments``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class MaskNoise:
    """Per-entity probabilities of each operation; ``max_jitter`` is in pixels of the given masks,
    ``local_below`` and ``drop_below`` shares of the image's area."""

    merge: float = 0.6
    split: float = 0.6
    jitter: float = 0.4
    drop: float = 0.5
    max_jitter: int = 2
    local_below: float = 0.1
    drop_below: float = 0.02


def perturb_masks(masks: np.ndarray, rng: np.random.Generator, noise: MaskNoise = MaskNoise()) -> np.ndarray:
    """bool (N, H, W) → bool (K, H, W): ``masks`` merged, split, jittered and dropped (in that order)
    as ``noise`` says. Never returns an empty mask; returns at least one mask when given one."""
    masks = np.asarray(masks, bool)
    if not len(masks):
        return masks
    area = masks[0].size
    pieces = _merge(masks, rng, noise.merge, noise.local_below * area)
    pieces = [part for m in pieces
              for part in (_split(m, rng) if rng.random() < noise.split and m.sum() < noise.local_below * area else [m])]
    pieces = [_jitter(m, rng, noise.max_jitter) if rng.random() < noise.jitter else m for m in pieces]
    kept = [m for m in pieces if m.any() and not (rng.random() < noise.drop and m.sum() < noise.drop_below * area)]
    if not kept:  # everything dropped: keep the largest, as a segmenter that finds one entity
        kept = [max(pieces, key=lambda m: int(m.sum()))]
    return np.stack(kept)


def _merge(masks: np.ndarray, rng: np.random.Generator, p: float, max_area: float) -> list[np.ndarray]:
    """Each entity below ``max_area`` pixels, with probability ``p``, joins one of the entities below
    it that it touches (within 1 px) and whose area is within 4× its own. Joins chain (connected
    components of the joins), as a segmenter's merged region can span several segments; the merged
    masks come in the order of their first entity."""
    n = len(masks)
    areas = masks.reshape(n, -1).sum(1)
    joins: list[tuple[int, int]] = []
    for i in range(n):
        if rng.random() >= p or areas[i] >= max_area:
            continue
        grown = ndimage.binary_dilation(masks[i], iterations=1)
        touching = [j for j in range(n) if j != i and areas[j] < max_area and areas[i] <= 4 * areas[j] <= 16 * areas[i]
                    and (grown & masks[j]).any()]
        if touching:
            joins.append((i, int(rng.choice(touching))))
    if not joins:
        return list(masks)
    rows, cols = zip(*joins)
    _, label = connected_components(coo_matrix((np.ones(len(joins)), (rows, cols)), shape=(n, n)), directed=False)
    return [np.any(masks[label == k], axis=0) for k in range(int(label.max()) + 1)]


def _split(mask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """``mask`` cut by a line through its centroid at a random angle; itself when a side is empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 2:
        return [mask]
    angle = rng.uniform(0.0, np.pi)
    side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
    if side.all() or not side.any():
        return [mask]
    a = np.zeros_like(mask)
    a[ys[side], xs[side]] = True
    return [a, mask & ~a]


def _jitter(mask: np.ndarray, rng: np.random.Generator, max_px: int) -> np.ndarray:
    """``mask`` dilated or eroded by 1..``max_px`` pixels; unchanged when erosion would empty it."""
    k = int(rng.integers(1, max(1, max_px) + 1))
    if rng.random() < 0.5:
        return ndimage.binary_dilation(mask, iterations=k)
    eroded = ndimage.binary_erosion(mask, iterations=k)
    return eroded if eroded.any() else mask


__all__ = ["MaskNoise", "perturb_masks"]
