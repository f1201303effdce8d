"""Class-agnostic entity AP (APe), the EntitySeg / CropFormer metric.

Every ground-truth and predicted category becomes one class, each image's predictions are made
non-overlapping (painted in ascending score order, so a higher score wins a contested pixel), and
stock pycocotools ``COCOeval`` (segm, IoU .50:.05:.95, maxDets 100) scores them. Without the
class-agnostic conversion stock COCOeval silently reports a number near 0 — the conversion is the
point of this evaluator.

Variants: "H" scores at the original resolution; "L" first resizes every image's ground truth and
predictions (nearest neighbour) so the short side is 800 and the long side at most 1333.

``subset`` (category or supercategory names, e.g. ``thin`` for ShapesWorld's wires and fences) adds
``APe_subset`` and ``AP50_subset``: AP on those entities alone, the way COCO scores a size range —
the other entities become ignored ground truth (a detection matching one is neither true nor false),
a detection matching nothing is a false positive.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from esgkit.core import Evaluator
from esgkit.core.errors import ConfigError, InputError
from esgkit.core.limits import check_entities
from esgkit.datasets.common import segmentation_to_mask
from esgkit.datasets.entityseg import InstancesIndex
from esgkit.core.fields import ID, NUMBER, SEGMENTATION

from .common import read_prediction_list

METRIC_NAMES = ("APe", "AP50", "AP75", "APs", "APm", "APl")
SUBSET_NAMES = ("APe_subset", "AP50_subset")


def low_res_size(height: int, width: int, short: int = 800, long: int = 1333) -> tuple[int, int]:
    """The (H, W) of the "L" variant: short side ``short``, long side at most ``long``."""
    scale = min(short / min(height, width), long / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if mask.shape == size:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)) > 127


def _encode(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def non_overlapping(masks: list[np.ndarray], scores: list[float]) -> list[np.ndarray]:
    """Each pixel kept only by the highest-scoring mask that covers it (ties: the later entry)."""
    if not masks:
        return []
    owner = np.full(masks[0].shape, -1, np.int64)
    for k in np.argsort(np.asarray(scores), kind="stable"):
        owner[masks[k]] = k
    return [owner == k for k in range(len(masks))]


def coco_eval_segm(gt: dict[str, Any], dets: list[dict[str, Any]], max_dets: int = 100) -> list[float]:
    """Stock COCOeval (segm) on an in-memory GT dataset and detection list → its 12 stats."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not gt["annotations"]:
            return [math.nan] * 12  # nothing to find: AP is undefined
        if not dets:
            return [0.0] * 12  # nothing found (loadRes cannot take an empty list)
        coco_dt = coco_gt.loadRes([dict(d) for d in dets])  # loadRes adds keys: keep the caller's dicts as given
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


class EntityEvaluator(Evaluator):
    """Class-agnostic entity AP (APe, AP50, AP75, APs/m/l) via pycocotools; H and L variants."""

    @dataclass
    class Config:
        variants: str = "H"  # "H", "L" or "H,L"; L keys get an "_L" suffix
        max_dets: int = 100
        subset: str = ""  # comma-separated category / supercategory names: also AP on those entities alone

    def __init__(self, config: EntityEvaluator.Config) -> None:
        variants = [v.strip().upper() for v in config.variants.split(",") if v.strip()]
        bad = [v for v in variants if v not in ("H", "L")]
        if bad or not variants:
            raise ConfigError(f"variants must be H, L or H,L; got {config.variants!r}", key="evaluator.variants")
        self.config = config
        self.variants = variants
        self.subset = {n.strip() for n in config.subset.split(",") if n.strip()}

    def subset_categories(self, index: InstancesIndex) -> set[Any]:
        """The category ids ``subset`` names (by name or supercategory); an unknown name is an error."""
        categories = index.data.get("categories") or []
        ids = {c.get("id") for c in categories if c.get("name") in self.subset or c.get("supercategory") in self.subset}
        known = {c.get("name") for c in categories} | {c.get("supercategory") for c in categories}
        if self.subset - known:
            raise ConfigError(f"subset names {sorted(self.subset - known)}, which no category or supercategory of "
                              f"{index.path} has; known: {sorted(str(k) for k in known if k)}", key="evaluator.subset")
        return ids

    def score(self, gt: str, pred: str) -> dict[str, float]:
        index = InstancesIndex(gt, "ground-truth JSON")
        subset = self.subset_categories(index) if self.subset else None
        images, gt_by_image = index.images, index.anns_by_image
        preds = read_prediction_list(pred, {"image_id": ID, "segmentation": SEGMENTATION, "score": NUMBER})
        pred_by_image: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for k, item in enumerate(preds):
            key = str(item["image_id"])
            if key not in images:
                raise InputError(f"prediction file {pred}: entry {k} names image_id {item['image_id']}, which {gt} does not have")
            pred_by_image[key].append((k, item))
        for key, items in pred_by_image.items():
            check_entities(len(items), f"prediction file {pred}: image {key}")
        # one image at a time, keeping only RLEs: real benchmarks do not fit in memory as masks
        sets = {v: {"images": [], "annotations": [], "dets": []} for v in self.variants}
        for key, info in images.items():
            h, w = info["height"], info["width"]
            gts = [(a, segmentation_to_mask(a["segmentation"], h, w, f"ground-truth JSON {gt} annotation {a.get('id')}"))
                   for a in gt_by_image.get(key, [])]
            items = pred_by_image.get(key, [])
            masks = [segmentation_to_mask(it["segmentation"], h, w, f"prediction file {pred} entry {k}") for k, it in items]
            scores = [float(it["score"]) for _, it in items]
            dets = list(zip(scores, non_overlapping(masks, scores)))
            for variant, acc in sets.items():
                size = low_res_size(h, w) if variant == "L" else (h, w)
                self._add_image(acc, info["id"], size, gts, dets, subset)
        out: dict[str, float] = {}
        for variant, acc in sets.items():
            suffix = "" if variant == "H" else "_L"
            runs = [(METRIC_NAMES, acc["annotations"])]
            if subset is not None:  # the others' area set outside every range: COCOeval ignores them
                runs.append((SUBSET_NAMES, [a if a["in_subset"] else {**a, "area": -1.0} for a in acc["annotations"]]))
            for names, gt_annotations in runs:
                gt_set = {"images": acc["images"], "annotations": gt_annotations, "categories": [{"id": 1, "name": "entity"}]}
                stats = coco_eval_segm(gt_set, acc["dets"], self.config.max_dets) if preds else [0.0] * 12
                for name, value in zip(names, stats):  # APe, AP50, … in COCOeval's order
                    out[name + suffix] = math.nan if value < 0 else value
        return out

    @staticmethod
    def _add_image(acc: dict[str, list[Any]], image_id: Any, size: tuple[int, int],
                   gts: list[tuple[dict[str, Any], np.ndarray]], dets: list[tuple[float, np.ndarray]],
                   subset: set[Any] | None = None) -> None:
        """Append one image's class-agnostic GT and detections (resized to ``size``) as RLEs; with a
        ``subset`` of category ids each annotation also records whether it belongs to it."""
        from pycocotools import mask as mask_utils

        acc["images"].append({"id": image_id, "height": size[0], "width": size[1]})
        for a, m in gts:
            rle = _encode(_resize(m, size))
            acc["annotations"].append({"id": len(acc["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                       "segmentation": rle, "area": float(mask_utils.area(rle)),
                                       "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                                       "iscrowd": int(a.get("iscrowd", 0)),
                                       **({} if subset is None else {"in_subset": a.get("category_id") in subset})})
        for score, m in dets:
            m = _resize(m, size)
            if m.any():  # a mask that lost every pixel to higher scores is no detection
                acc["dets"].append({"image_id": image_id, "category_id": 1, "segmentation": _encode(m), "score": score})
