"""Box and mask IoU matrices, and how predicted entity masks overlap annotated segments: the
mask-limited best grounding (``AR_oracle``) and the predicted-entity → annotated-segment assignment
that gives GELLA its association targets when it trains on a segmenter's masks.

Annotated segments are disjoint (a panoptic map), so intersections are counted with one
``bincount`` per predicted mask over the segments' id map, exactly and at full resolution.
"""

from __future__ import annotations

import numpy as np


def segment_overlaps(masks: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """int64 (N, M): pixels of predicted mask n inside annotated segment m. ``masks`` bool (N, H, W)
    may overlap each other; ``segments`` bool (M, H, W) must not (a pixel in two segments is
    counted for the first)."""
    masks, segments = np.asarray(masks, bool), np.asarray(segments, bool)
    if masks.shape[1:] != segments.shape[1:]:
        raise ValueError(f"masks are {masks.shape[1:]} but segments {segments.shape[1:]}")
    m = len(segments)
    label = np.zeros(segments.shape[1:], np.int64)  # 0 = no segment, k + 1 = segment k
    for k in range(m - 1, -1, -1):
        label[segments[k]] = k + 1
    out = np.zeros((len(masks), m), np.int64)
    for n, mask in enumerate(masks):
        out[n] = np.bincount(label[mask], minlength=m + 1)[1:]
    return out


def best_union(masks: np.ndarray, target: np.ndarray, plural: bool, inter: np.ndarray | None = None,
               areas: np.ndarray | None = None) -> list[int]:
    """The entities whose union best fits ``target`` (bool (H, W)) by IoU — the best any grounding of
    these masks can do for one phrase. Singular: the single best entity. Plural: a greedy union,
    entities taken in order of the share of their area inside the target while the IoU grows (the
    exact optimum is a subset search; greedy by precision reaches it when entities do not overlap
    and each lies mostly inside or mostly outside the target). Empty when nothing touches it.
    ``inter`` (N,) each mask's pixels inside the target and ``areas`` (N,) its pixels, when known."""
    masks, target = np.asarray(masks, bool), np.asarray(target, bool)
    if not len(masks) or not target.any():
        return []
    if inter is None:
        inter = segment_overlaps(masks, target[None])[:, 0]
    area = masks.reshape(len(masks), -1).sum(1) if areas is None else np.asarray(areas)
    t_area = int(target.sum())
    touching = np.nonzero(inter > 0)[0]
    if not len(touching):
        return []
    if not plural:
        iou = inter[touching] / (area[touching] + t_area - inter[touching])
        return [int(touching[int(np.argmax(iou))])]
    order = touching[np.argsort(-(inter[touching] / area[touching]), kind="stable")]
    union = np.zeros_like(target)
    chosen: list[int] = []
    best = 0.0
    for n in order:
        grown = union | masks[n]
        iou = float((grown & target).sum() / (grown | target).sum())
        if iou <= best:
            break
        union, best = grown, iou
        chosen.append(int(n))
    return chosen


def assign_to_segments(masks: np.ndarray, segments: np.ndarray, min_share: float = 0.5) -> np.ndarray:
    """int64 (N,): for each predicted mask, the annotated segment holding the largest part of its
    area, or -1 when that part is below ``min_share`` of the mask (a mask mostly on unannotated
    pixels or spread over several segments). A segment split into pieces gives every piece to it;
    a merge of two segments goes to the one it mostly covers."""
    masks = np.asarray(masks, bool)
    if not len(masks) or not len(segments):
        return np.full(len(masks), -1, np.int64)
    inter = segment_overlaps(masks, segments)
    area = np.maximum(masks.reshape(len(masks), -1).sum(1), 1)
    best = inter.argmax(1)
    share = inter[np.arange(len(masks)), best] / area
    return np.where(share >= min_share, best, -1).astype(np.int64)


ERROR_KINDS = ("good", "coarse", "split", "merged", "missed")


def segment_errors(masks: np.ndarray, segments: np.ndarray, good_iou: float = 0.75, missed_iou: float = 0.1) -> list[str]:
    """How predicted ``masks`` got each annotated segment wrong, one of ``ERROR_KINDS`` per segment:
    ``good`` (a mask with IoU ≥ ``good_iou``), ``missed`` (no mask reaches ``missed_iou``),
    ``merged`` (the best mask lies mostly outside the segment), ``split`` (several masks lie mostly
    inside it), else ``coarse``. Measures a segmenter's errors (``scripts/segmenter_errors.py``)
    and the ones ``training/mask_augment.py`` imitates."""
    segments = np.asarray(segments, bool)
    if not len(masks):
        return ["missed"] * len(segments)
    inter = segment_overlaps(masks, segments).astype(np.float64)
    area = np.maximum(np.asarray(masks, bool).reshape(len(masks), -1).sum(1), 1)
    seg_area = segments.reshape(len(segments), -1).sum(1)
    kinds = []
    for m in range(len(segments)):
        iou = inter[:, m] / (area + seg_area[m] - inter[:, m])
        best = int(np.argmax(iou))
        inside = inter[:, m] / area
        if iou[best] >= good_iou:
            kinds.append("good")
        elif iou[best] < missed_iou:
            kinds.append("missed")
        elif inside[best] < 0.5:
            kinds.append("merged")
        elif (inside > 0.5).sum() > 1:
            kinds.append("split")
        else:
            kinds.append("coarse")
    return kinds


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """(N, N) IoU of [x, y, w, h] boxes."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = iw * ih
    area = boxes[:, 2] * boxes[:, 3]
    union = area[:, None] + area[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def mask_iou_matrix(masks: np.ndarray) -> np.ndarray:
    """(N, N) IoU of bool (N, P) masks (flattened)."""
    m = masks.reshape(len(masks), -1).astype(np.float32)
    inter = m @ m.T
    area = m.sum(1)
    union = area[:, None] + area[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


__all__ = ["ERROR_KINDS", "assign_to_segments", "best_union", "box_iou_matrix", "mask_iou_matrix", "segment_errors",
           "segment_overlaps"]
