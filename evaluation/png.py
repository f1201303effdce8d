"""Panoptic Narrative Grounding metrics, as the official benchmark defines them.

Per grounded noun phrase: IoU between the predicted mask and the ground truth, where the ground
truth of a phrase linked to several segments is the union of those segments. recall(t) = share of
phrases with IoU ≥ t; AR = area under recall(t) over t ∈ [0, 1]. That area equals the mean IoU
exactly (∫₀¹ P(IoU ≥ t) dt = E[IoU]); the official code's Riemann sum with step 1e-5 differs from it by
at most 1e-5. AR_th / AR_st split phrases by the panoptic category of their (last) segment, AR_sing /
AR_pl by one vs several ground-truth segments, acc@0.5 = share of phrases with IoU > 0.5 (strictly,
as the official code computes it). A phrase
without a prediction counts as an empty mask (IoU 0).

Two IoU conventions (``convention``):

* ``exact`` (default): binary IoU of the predicted and ground-truth masks at the image's own size.
* ``official``: what the official PNG code computes. Each ground-truth segment is resized to
  256×256 (bilinear, as ``torchvision.transforms.Resize`` on a tensor) and the phrase's segments are
  summed; the predicted mask is resized the same way; both are resized back to the image size and
  compared by soft IoU Σpt / Σ(p + t − pt). Blurred borders make it < 1 even for a perfect answer on
  an image that is not 256² (e.g. ≈ 0.88 on a 640×480 copy of the ground truth). The official code
  takes a plural phrase's max over its resized instances; a prediction file holds the union, whose
  resize is ≥ that max only on pixels where two chosen instances touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Evaluator
from esgkit.core.errors import InputError
from esgkit.datasets.coco_panoptic import PanopticIndex
from esgkit.datasets.common import find_file
from esgkit.core.fields import ID, INDEX, SEGMENTATION
from esgkit.datasets.png import read_narratives

from .common import covered_images, mask_iou, mean, narrative_of, narratives_by_image, prediction_mask, ratio, read_prediction_list


def average_recall(ious: list[float]) -> float:
    """Area under the recall–IoU-threshold curve on [0, 1] (= mean IoU); NaN for no phrases."""
    return mean([min(1.0, max(0.0, v)) for v in ious])


def official_phrase_mask(proposals: np.ndarray, scores: np.ndarray, plural: bool, threshold: float = 0.1) -> np.ndarray:
    """The official benchmark's rule for turning proposal scores into one phrase mask: a singular
    phrase takes the best proposal; a plural one the pixel-wise max (union) of the proposals scoring
    above ``threshold``. ``proposals`` is bool (N, H, W), ``scores`` (N,) in [0, 1]."""
    proposals = np.asarray(proposals, bool)
    scores = np.asarray(scores, float)
    if proposals.shape[0] == 0:
        return np.zeros(proposals.shape[1:], bool)
    if not plural:
        return proposals[int(np.argmax(scores))].copy()
    chosen = proposals[scores > threshold]
    return chosen.any(axis=0) if len(chosen) else np.zeros(proposals.shape[1:], bool)


CONVENTIONS = ("exact", "official")
OFFICIAL_SIDE = 256


def _bilinear(mask: np.ndarray | Any, size: tuple[int, int]) -> Any:
    """float (H, W) → (size) by bilinear interpolation without antialiasing (torchvision's tensor Resize)."""
    import torch

    x = torch.as_tensor(np.asarray(mask, np.float32))[None, None]
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0]


def official_iou(pred: np.ndarray, segments: list[np.ndarray]) -> float:
    """The official PNG code's soft IoU of a predicted mask and a phrase's segments (``official``)."""
    h, w = pred.shape
    side = (OFFICIAL_SIDE, OFFICIAL_SIDE)
    p = _bilinear(_bilinear(pred, side), (h, w))
    t = _bilinear(sum(_bilinear(s, side) for s in segments), (h, w))
    inter = float((p * t).sum())
    union = float((p + t - p * t).sum())
    return ratio(inter, union)


class PNGEvaluator(Evaluator):
    """Panoptic Narrative Grounding: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5 (official definition)."""

    @dataclass
    class Config:
        panoptic_json: str = ""  # default: panoptic_<split>.json beside the narrative JSON
        panoptic_dir: str = ""  # default: the panoptic JSON's path without .json
        convention: str = "exact"  # exact | official (the official code's 256² soft IoU; module docstring)
        missing: str = "error"     # images without predictions: error | skip | zero (evaluation/common.MISSING)

    def __init__(self, config: PNGEvaluator.Config) -> None:
        if config.convention not in CONVENTIONS:
            from esgkit.core.errors import ConfigError

            raise ConfigError(f"unknown convention {config.convention!r}; one of {', '.join(CONVENTIONS)}",
                              key="convention")
        self.config = config

    def _panoptic(self, gt: Path) -> PanopticIndex:
        if self.config.panoptic_json:
            json_path = find_file([Path(self.config.panoptic_json)], "panoptic JSON")
        else:
            split = gt.stem.removeprefix("png_coco_")
            json_path = find_file([gt.parent / f"panoptic_{split}.json"],
                                  f"panoptic JSON for {gt} (set panoptic_json=...)")
        png_dir = self.config.panoptic_dir or None
        if png_dir is None:
            png_dir = find_file([json_path.with_suffix(""), json_path.parent / "panoptic_segmentation" /
                                 json_path.stem.removeprefix("panoptic_")], "panoptic PNG folder")
        return PanopticIndex(json_path, png_dir)

    def phrase_ious(self, gt: str, pred: str) -> list[dict[str, Any]]:
        """One record per grounded phrase: image_id, phrase_index, iou, is_thing, plural (GT)."""
        gt_path = Path(gt)
        narratives = read_narratives(gt_path)
        panoptic = self._panoptic(gt_path)
        preds = read_prediction_list(pred, {"image_id": ID, "phrase_index": INDEX, "segmentation": SEGMENTATION},
                                     {"narrative_index": INDEX})
        by_image = narratives_by_image(narratives)
        table: dict[tuple[int, int], tuple[int, dict[str, Any]]] = {}
        for k, item in enumerate(preds):
            image_id = str(item["image_id"])
            nidx = narrative_of(item, by_image, gt, pred, k)
            n_phr = len(narratives[int(nidx)].phrase_segments)
            p = item["phrase_index"]
            if p >= n_phr:
                raise InputError(f"prediction file {pred}: entry {k}: phrase_index {p!r} is unknown "
                                 f"(image {image_id} has {n_phr} grounded phrases, indices 0..{n_phr - 1})")
            key = (int(nidx), p)
            if key in table:
                raise InputError(f"prediction file {pred}: entry {k} repeats image {image_id} phrase {p}")
            table[key] = (k, item)
        records = []
        scored = covered_images(list(by_image), {str(item["image_id"]) for item in preds}, self.config.missing, gt, pred)
        for image_id in scored:
            indices = by_image[image_id]
            id_map = panoptic.id_map(image_id)
            isthing = {s["id"]: panoptic.isthing(s["category_id"]) for s in panoptic.annotation(image_id)["segments_info"]}
            h, w = id_map.shape
            for nidx in indices:
                for p, ids in enumerate(narratives[nidx].phrase_segments):
                    unknown = [i for i in ids if i not in isthing]
                    if unknown:
                        raise InputError(f"narrative JSON {gt}: entry {nidx} links segment ids {unknown} that "
                                         f"{panoptic.json_path} does not list for image {image_id}")
                    target = np.isin(id_map, ids)
                    if (nidx, p) in table:
                        k, item = table[(nidx, p)]
                        mask = prediction_mask(item, h, w, pred, k)
                    else:
                        mask = np.zeros((h, w), bool)
                    if self.config.convention == "official":
                        iou = official_iou(mask, [id_map == i for i in ids])
                    else:
                        iou = ratio(*mask_iou(mask, target))
                    records.append({"image_id": image_id, "narrative_index": nidx, "phrase_index": p,
                                    "iou": iou, "is_thing": isthing[ids[-1]], "plural": len(ids) > 1})
        return records

    def score(self, gt: str, pred: str) -> dict[str, float]:
        rec = self.phrase_ious(gt, pred)
        ious = [r["iou"] for r in rec]
        return {
            "AR": average_recall(ious),
            "AR_th": average_recall([r["iou"] for r in rec if r["is_thing"]]),
            "AR_st": average_recall([r["iou"] for r in rec if not r["is_thing"]]),
            "AR_sing": average_recall([r["iou"] for r in rec if not r["plural"]]),
            "AR_pl": average_recall([r["iou"] for r in rec if r["plural"]]),
            "acc@0.5": mean([float(v > 0.5) for v in ious]),  # strictly above, as the official code
        }
