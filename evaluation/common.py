"""Shared pieces of the evaluators: reading prediction files with errors that name the file and the
entry, mask IoU with the empty-union convention, and the metric record."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from esgkit.core.errors import InputError
from esgkit.core.io import read_json
from esgkit.datasets.common import segmentation_to_mask
from esgkit.core.fields import Field, check_fields, check_list


def read_prediction_list(path: str | Path, required: Mapping[str, Field],
                         optional: Mapping[str, Field] | None = None) -> list[dict[str, Any]]:
    """A JSON list of prediction objects, each holding ``required`` keys of the given kinds
    (``esgkit.core.fields``; ``optional`` ones checked when present). ``[]`` is valid."""
    data = read_json(path, "prediction file")
    check_list(data, f"prediction file {path}", "prediction objects (see docs/formats.md)")
    for k, item in enumerate(data):
        check_fields(item, f"prediction file {path}: entry {k}", required, optional)
    return data


MISSING = ("error", "skip", "zero")
"""What an evaluator does with ground-truth images a non-empty prediction file has no entry for:
refuse (``error``, default: a file of a subset run scored against the whole split would silently
count every other image as a miss), score only the covered images (``skip``, with a warning that
says how many were left out), or count them as empty predictions (``zero``, the official codes'
behaviour). An empty prediction file scores every image as empty."""


def covered_images(gt_images: Sequence[str], pred_images: set[str], missing: str, gt: str | Path,
                   pred: str | Path) -> list[str]:
    """The ground-truth images to score under the ``missing`` rule (see ``MISSING``)."""
    if missing not in MISSING:
        from esgkit.core.errors import ConfigError

        raise ConfigError(f"unknown rule {missing!r}; one of {', '.join(MISSING)}", key="missing")
    absent = [i for i in gt_images if i not in pred_images]
    if not absent or missing == "zero":
        return list(gt_images)
    if not pred_images:
        warnings.warn(f"prediction file {pred} is empty: every ground-truth image counts as an empty prediction",
                      stacklevel=3)
        return list(gt_images)
    kept = [i for i in gt_images if i in pred_images]
    if missing == "skip":
        warnings.warn(f"prediction file {pred} covers {len(kept)} of the {len(gt_images)} images of {gt}: "
                      f"{len(absent)} are left out (e.g. image {absent[0]})", stacklevel=3)
        return kept
    raise InputError(f"prediction file {pred} covers {len(kept)} of the {len(gt_images)} images of {gt} "
                     f"({len(absent)} have no entry, e.g. image {absent[0]}). Score the ground truth its run wrote "
                     "(`esgkit eval` writes it beside the predictions), score only the covered images with the "
                     "option missing=skip, or count the others as empty predictions with missing=zero")


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
