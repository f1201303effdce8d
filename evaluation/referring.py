"""Referring expression segmentation (RES) and comprehension (REC) metrics over RefCOCO-style files.

The unit is one sentence (``sent_id``); its ground truth is the mask / box of the ref's annotation.
RES: cIoU = ΣI / ΣU over the split; gIoU = mean per-sentence IoU (1 when the union is empty);
Prec@X = share of sentences with IoU ≥ X. Computed at the original resolution.
REC: Acc@0.5 = share of sentences whose predicted box has IoU ≥ 0.5 with the GT box.
A sentence without a prediction counts as an empty mask / a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Evaluator
from esgkit.core.errors import InputError
from esgkit.datasets.common import find_file
from esgkit.core.fields import BOX, ID, SEGMENTATION
from esgkit.datasets.refcoco import RefIndex

from .common import covered_images, mask_iou, mean, prediction_mask, ratio, read_prediction_list

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def ref_index(gt: str, split: str, instances_json: str) -> RefIndex:
    """``gt`` is a refs file (``refs(unc).p`` / ``.json``) or the folder holding it and instances.json."""
    path = Path(gt)
    if path.is_dir():
        path = find_file([path / "refs(unc).p", path / "refs(unc).json", path / "refs.json"], f"refs file in {gt}")
    elif not path.is_file():
        raise InputError(f"refs file {path}: no such file")
    instances = Path(instances_json) if instances_json else path.parent / "instances.json"
    return RefIndex(path, instances, split)


def _keyed(preds: list[dict[str, Any]], index: RefIndex, path: str) -> dict[int, tuple[int, dict[str, Any]]]:
    out: dict[int, tuple[int, dict[str, Any]]] = {}
    for k, item in enumerate(preds):
        try:
            sid = int(item["sent_id"])
        except (TypeError, ValueError) as exc:
            raise InputError(f"prediction file {path}: entry {k}: sent_id {item['sent_id']!r} is not an integer") from exc
        if sid not in index.by_sent:
            raise InputError(f"prediction file {path}: entry {k} names sent_id {sid}, which is not a sentence "
                             f"of {index.refs_path} in this split")
        if sid in out:
            raise InputError(f"prediction file {path}: entry {k} repeats sent_id {sid}")
        out[sid] = (k, item)
    return out


class RESEvaluator(Evaluator):
    """Referring segmentation: cIoU, gIoU, Prec@0.5–0.9 (per sentence, original resolution)."""

    @dataclass
    class Config:
        split: str = ""  # the refs' "split" to score ("" = every ref in the file)
        instances_json: str = ""  # default: instances.json beside the refs file
        missing: str = "error"  # images without predictions: error | skip | zero (evaluation/common.MISSING)

    def __init__(self, config: RESEvaluator.Config) -> None:
        self.config = config

    def score(self, gt: str, pred: str) -> dict[str, float]:
        index = ref_index(gt, self.config.split, self.config.instances_json)
        preds = _keyed(read_prediction_list(pred, {"sent_id": ID, "segmentation": SEGMENTATION}), index, pred)
        inter = union = 0
        ious = []
        cached: tuple[int, np.ndarray] | None = None  # sentences of one ref are adjacent: keep one mask
        for s in _covered(index, preds, self.config.missing, gt, pred):
            if cached is None or cached[0] != s["ann_id"]:
                cached = (s["ann_id"], index.ann_mask(s["ann_id"]))
            target = cached[1]
            if s["sent_id"] in preds:
                k, item = preds[s["sent_id"]]
                mask = prediction_mask(item, *target.shape, pred, k)
            else:
                mask = np.zeros_like(target)
            i, u = mask_iou(mask, target)
            inter, union = inter + i, union + u
            ious.append(ratio(i, u))
        out = {"cIoU": ratio(inter, union) if ious else float("nan"), "gIoU": mean(ious)}
        for t in PREC_THRESHOLDS:
            out[f"Prec@{t}"] = mean([float(v >= t) for v in ious])
        return out


def _covered(index: Any, preds: dict[int, Any], missing: str, gt: str, pred: str) -> list[dict[str, Any]]:
    """The sentences to score: those of the images the prediction file covers (``missing`` rule)."""
    by_sent = {s["sent_id"]: s["image_id"] for s in index.sentences}
    images = covered_images(list(dict.fromkeys(s["image_id"] for s in index.sentences)),
                            {by_sent[k] for k in preds if k in by_sent}, missing, gt, pred)
    keep = set(images)
    return [s for s in index.sentences if s["image_id"] in keep]


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x, y, w, h] boxes (continuous coordinates)."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return ratio(inter, a[2] * a[3] + b[2] * b[3] - inter)


class RECEvaluator(Evaluator):
    """Referring comprehension: Acc@0.5 of predicted [x, y, w, h] boxes."""

    @dataclass
    class Config:
        split: str = ""
        instances_json: str = ""
        missing: str = "error"

    def __init__(self, config: RECEvaluator.Config) -> None:
        self.config = config

    def score(self, gt: str, pred: str) -> dict[str, float]:
        index = ref_index(gt, self.config.split, self.config.instances_json)
        preds = _keyed(read_prediction_list(pred, {"sent_id": ID, "bbox": BOX}), index, pred)
        hits = []
        for s in _covered(index, preds, self.config.missing, gt, pred):
            if s["sent_id"] not in preds:
                hits.append(0.0)
                continue
            k, item = preds[s["sent_id"]]
            hits.append(float(box_iou([float(v) for v in item["bbox"]], s["bbox"]) >= 0.5))
        return {"Acc@0.5": mean(hits)}
