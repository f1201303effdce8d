"""Panoptic quality (PQ = SQ × RQ), overall / things / stuff, with the standard COCO rules.

A predicted and a GT segment of the same category match when IoU > 0.5 (so matches are unique).
Pixels with GT id 0 are VOID (a GT PNG holding an id its segments_info does not list is refused by
the reader, ``PanopticIndex.id_map``): a predicted segment's overlap with VOID is taken out of its
union, and an unmatched prediction that lies more than half on VOID or on a crowd region of its
category is not a false positive. Per category PQ = ΣIoU(TP) / (TP + ½FP + ½FN); the reported
numbers average over the categories that occur (TP + FP + FN > 0).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Evaluator
from esgkit.core.errors import InputError
from esgkit.core.io import read_json
from esgkit.datasets.coco_panoptic import PanopticIndex, panoptic_annotations
from esgkit.core.fields import shape

from .common import covered_images

OFFSET = 1 << 32


@dataclass
class _Stat:
    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


def _summary(stats: dict[int, _Stat], cats: list[int]) -> tuple[float, float, float]:
    pq, sq, rq, n = 0.0, 0.0, 0.0, 0
    for c in cats:
        s = stats.get(c)
        if s is None or s.tp + s.fp + s.fn == 0:
            continue
        n += 1
        denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
        pq += s.iou / denom
        sq += s.iou / s.tp if s.tp else 0.0
        rq += s.tp / denom
    return (pq / n, sq / n, rq / n) if n else (math.nan, math.nan, math.nan)


def pq_image(gt_map: np.ndarray, gt_segs: dict[int, dict[str, Any]], pred_map: np.ndarray,
             pred_segs: dict[int, dict[str, Any]], stats: dict[int, _Stat]) -> None:
    """Add one image's TP / FP / FN / IoU per category into ``stats``."""
    gt_ids = np.where(np.isin(gt_map, list(gt_segs)), gt_map, 0).astype(np.int64)
    labels, counts = np.unique(gt_ids * OFFSET + pred_map.astype(np.int64), return_counts=True)
    inter = {(int(l // OFFSET), int(l % OFFSET)): int(c) for l, c in zip(labels, counts)}
    gt_area: dict[int, int] = defaultdict(int)
    pred_area: dict[int, int] = defaultdict(int)
    for (g, p), c in inter.items():
        gt_area[g] += c
        pred_area[p] += c
    matched_gt, matched_pred = set(), set()
    for (g, p), c in inter.items():
        if g == 0 or p == 0 or p not in pred_segs:
            continue
        gs, ps = gt_segs[g], pred_segs[p]
        if gs.get("iscrowd", 0) or gs["category_id"] != ps["category_id"]:
            continue
        union = pred_area[p] + gt_area[g] - c - inter.get((0, p), 0)
        iou = c / union if union else 0.0
        if iou > 0.5:
            s = stats.setdefault(gs["category_id"], _Stat())
            s.tp += 1
            s.iou += iou
            matched_gt.add(g)
            matched_pred.add(p)
    crowd: dict[int, list[int]] = defaultdict(list)  # COCO has at most one per category; allow more
    for g, gs in gt_segs.items():
        if gs.get("iscrowd", 0):
            crowd[gs["category_id"]].append(g)
        elif g not in matched_gt and gt_area.get(g, 0) > 0:
            stats.setdefault(gs["category_id"], _Stat()).fn += 1
    for p, ps in pred_segs.items():
        if p in matched_pred or pred_area.get(p, 0) == 0:
            continue
        ignored = inter.get((0, p), 0) + sum(inter.get((g, p), 0) for g in crowd.get(ps["category_id"], []))
        if ignored / pred_area[p] > 0.5:
            continue
        stats.setdefault(ps["category_id"], _Stat()).fp += 1


def _pred_index(pred: str, pred_dir: str) -> tuple[dict[str, dict[str, Any]], Path]:
    """The prediction JSON's annotations by image id, each checked (its ``segments_info`` → ``segments``)."""
    data = read_json(pred, "prediction file")
    if isinstance(data, list) and not data:
        return {}, Path(pred).with_suffix("")
    if not isinstance(data, dict) or "annotations" not in data:
        raise InputError(f"prediction file {pred}: expected a COCO-panoptic object {{\"annotations\": [...]}}; "
                         f"got {shape(data)} (see docs/formats.md)")
    anns = {key: {**a, "segments": segments} for key, (a, segments)
            in panoptic_annotations(data["annotations"], f"prediction file {pred}", file_name_required=False).items()}
    return anns, Path(pred_dir) if pred_dir else Path(pred).with_suffix("")


class PanopticEvaluator(Evaluator):
    """Panoptic quality: PQ, SQ, RQ overall, for things (_th) and for stuff (_st)."""

    @dataclass
    class Config:
        gt_dir: str = ""  # default: the GT JSON's path without .json
        pred_dir: str = ""  # default: the prediction JSON's path without .json
        missing: str = "error"  # images without predictions: error | skip | zero (evaluation/common.MISSING)

    def __init__(self, config: PanopticEvaluator.Config) -> None:
        self.config = config

    def score(self, gt: str, pred: str) -> dict[str, float]:
        from esgkit.core.io import load_id_map_png

        index = PanopticIndex(gt, self.config.gt_dir or None)
        pred_anns, pred_dir = _pred_index(pred, self.config.pred_dir)
        unknown = [i for i in pred_anns if i not in index.annotations]
        if unknown:
            raise InputError(f"prediction file {pred}: image_id {unknown[0]} is not in {gt}")
        stats: dict[int, _Stat] = {}
        for image_id in covered_images(list(index.annotations), set(pred_anns), self.config.missing, gt, pred):
            gt_map = index.id_map(image_id)
            gt_segs = {s["id"]: s for s in index.annotation(image_id)["segments_info"]}
            ann = pred_anns.get(image_id)
            if ann is None:
                pred_map, pred_segs = np.zeros_like(gt_map), {}
            else:
                path = pred_dir / (ann.get("file_name") or f"{image_id}.png")
                if not path.is_file():
                    raise InputError(f"prediction PNG {path}: no such file (image {image_id} of {pred})")
                pred_map = load_id_map_png(path)
                if pred_map.shape != gt_map.shape:
                    raise InputError(f"prediction PNG {path}: is {pred_map.shape[1]}x{pred_map.shape[0]} (WxH) but "
                                     f"the GT of image {image_id} is {gt_map.shape[1]}x{gt_map.shape[0]}")
                pred_segs = ann["segments"]
                for s in pred_segs.values():
                    if s["category_id"] not in index.categories:
                        raise InputError(f"prediction file {pred}: image {image_id} segment {s['id']} has "
                                         f"unknown category_id {s.get('category_id')}")
                stray = set(np.unique(pred_map).tolist()) - set(pred_segs) - {0}
                if stray:
                    raise InputError(f"prediction PNG {path}: holds segment ids {sorted(stray)[:5]} that "
                                     f"{pred} does not list in segments_info")
            pq_image(gt_map, gt_segs, pred_map, pred_segs, stats)
        things = [c for c in index.categories if index.isthing(c)]
        stuff = [c for c in index.categories if not index.isthing(c)]
        out = {}
        for suffix, cats in (("", list(index.categories)), ("_th", things), ("_st", stuff)):
            pq, sq, rq = _summary(stats, cats)
            out.update({f"PQ{suffix}": pq, f"SQ{suffix}": sq, f"RQ{suffix}": rq})
        return out
