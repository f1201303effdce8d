"""Panoptic segmentation by category prompt (ESG §5.3.3): GELLA reads "There might exist circle,
square, …, sky." with every category name as a teacher-forced phrase, and each entity takes the
category whose phrase associates with it best. An entity whose best score is below
``pipeline.panoptic_threshold`` is left void; every thing entity is its own segment, and the entities
of one stuff category are merged into one segment (the COCO-panoptic convention). Where entities
overlap, the higher-scoring one is painted on top.

``pipeline.panoptic_names`` maps a category to the word prompted for it, so the same run can ask
for words the model never read in training (open vocabulary); the prediction still names the
dataset's category ids, so the ``panoptic`` evaluator scores it unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from esgkit.core import Caption, NounPhrase


def category_caption(template: str, names: list[str]) -> Caption:
    """``template`` with ``{}`` replaced by the comma-separated ``names``, each one a phrase."""
    head, sep, tail = template.partition("{}")
    if not sep:
        from esgkit.core.errors import ConfigError

        raise ConfigError(f"the prompt {template!r} has no {{}} for the category names", key="pipeline.panoptic_prompt")
    text, phrases = head, []
    for k, name in enumerate(names):
        text += ", " if k else ""
        phrases.append(NounPhrase(name, len(text), len(text) + len(name)))
        text += name
    return Caption(text + tail, tuple(phrases))


def panoptic_segments(scores: np.ndarray, masks: Any, categories: list[dict[str, Any]],
                      threshold: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(C, N) category-to-entity scores → a panoptic id map (H, W) and its ``segments_info``."""
    h, w = masks.image_size
    id_map = np.zeros((h, w), np.int64)
    if not len(masks) or not categories:
        return id_map, []
    best = scores.argmax(0)
    score = scores[best, np.arange(scores.shape[1])]
    segments: list[dict[str, Any]] = []
    stuff_segment: dict[int, int] = {}
    for n in np.argsort(score, kind="stable"):  # ascending: the best-scoring entity ends on top
        if score[n] < threshold:
            continue
        cat = categories[int(best[n])]
        if not cat.get("isthing", 1) and int(cat["id"]) in stuff_segment:
            seg = stuff_segment[int(cat["id"])]
        else:
            seg = len(segments) + 1
            segments.append({"id": seg, "category_id": int(cat["id"]), "score": float(score[n])})
            if not cat.get("isthing", 1):
                stuff_segment[int(cat["id"])] = seg
        id_map[masks.masks[n]] = seg
    present = set(np.unique(id_map).tolist())
    return id_map, [s for s in segments if s["id"] in present]  # a segment painted over entirely is gone


__all__ = ["category_caption", "panoptic_segments"]
