"""Shared pieces of the evaluators: reading prediction files with errors that name the file and the
entry, mask IoU with the empty-union convention, and the metric record."""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from esgkit.core.errors import InputError
from esgkit.datasets.common import read_json, segmentation_to_mask


def read_prediction_list(path: str | Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """A JSON list of prediction objects, each holding ``required`` keys. ``[]`` is valid."""
    data = read_json(path, "prediction file")
    if not isinstance(data, list):
        raise InputError(f"prediction file {path}: expected a JSON list of objects (see docs/formats.md)")
    for k, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"prediction file {path}: entry {k} is not an object")
        missing = [key for key in required if key not in item]
        if missing:
            raise InputError(f"prediction file {path}: entry {k} lacks {', '.join(repr(m) for m in missing)}")
    return data


def narratives_by_image(narratives: Sequence[Any]) -> dict[str, list[int]]:
    """image id → the indices of its narratives in the ground-truth list (PNG-style files)."""
    out: dict[str, list[int]] = {}
    for n in narratives:
        out.setdefault(n.image_id, []).append(n.index)
    return out


def narrative_of(item: dict[str, Any], by_image: dict[str, list[int]], gt: str | Path, pred: str | Path, k: int) -> int:
    """The ground-truth narrative a prediction entry is about: its ``narrative_index``, which may be
    left out when its image has one narrative only; InputError naming the entry otherwise."""
    image_id = str(item["image_id"])
    if image_id not in by_image:
        raise InputError(f"prediction file {pred}: entry {k} names image_id {image_id}, which {gt} does not have")
    index = item.get("narrative_index")
    if index is None:
        if len(by_image[image_id]) > 1:
            raise InputError(f"prediction file {pred}: entry {k}: image {image_id} has several narratives "
                             "in the GT; add narrative_index (its position in the GT list)")
        return by_image[image_id][0]
    if int(index) not in by_image[image_id]:
        raise InputError(f"prediction file {pred}: entry {k}: narrative_index {index} is not a narrative of image {image_id}")
    return int(index)


def prediction_mask(item: dict[str, Any], height: int, width: int, path: str | Path, k: int) -> np.ndarray:
    """The entry's ``segmentation`` (COCO RLE or polygons) as a bool mask of the GT image's size."""
    return segmentation_to_mask(item["segmentation"], height, width, f"prediction file {path} entry {k}")


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two bool masks."""
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def ratio(intersection: float, union: float) -> float:
    """I / U, counted as 1 when the union is empty (both masks empty: a perfect answer)."""
    return 1.0 if union == 0 else intersection / union


def mean(values: list[float]) -> float:
    """Mean, or NaN for no values (a metric over an empty subset is undefined, not 0)."""
    return float(np.mean(values)) if values else math.nan
