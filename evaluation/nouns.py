"""Noun-extraction recall and precision: how many of a narrative's annotated noun phrases a model
names itself (GELLA's noun prompt), matched by their exact span in the caption.

``noun_recall`` = annotated phrases whose (start, end) span was predicted / annotated phrases;
``noun_precision`` = the same count / predicted phrases. Ground truth: a Panoptic Narrative
Grounding JSON (its grounded phrases, located in the caption as ``png`` does). Predictions: a JSON
list of ``{"image_id", "phrases": [[start, end], ...]}`` (``narrative_index`` as in ``png``
predictions when an image has several narratives); a narrative without an entry predicted nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from esgkit.core import Evaluator
from esgkit.core.errors import InputError
from esgkit.datasets.png import read_narratives

from .common import read_prediction_list


class NounExtractionEvaluator(Evaluator):
    """Noun extraction: recall and precision of the predicted phrase spans (noun_recall, noun_precision)."""

    @dataclass
    class Config:
        pass

    def __init__(self, config: NounExtractionEvaluator.Config) -> None:
        self.config = config

    def score(self, gt: str, pred: str) -> dict[str, float]:
        narratives = read_narratives(gt)
        by_image: dict[str, list[int]] = {}
        for n in narratives:
            by_image.setdefault(n.image_id, []).append(n.index)
        predicted: dict[int, list[tuple[int, int]]] = {}
        for k, item in enumerate(read_prediction_list(pred, ("image_id", "phrases"))):
            image_id = str(item["image_id"])
            if image_id not in by_image:
                raise InputError(f"prediction file {pred}: entry {k} names image_id {image_id}, which {gt} does not have")
            index = item.get("narrative_index")
            if index is None:
                if len(by_image[image_id]) > 1:
                    raise InputError(f"prediction file {pred}: entry {k}: image {image_id} has several narratives "
                                     "in the GT; add narrative_index (its position in the GT list)")
                index = by_image[image_id][0]
            if int(index) not in by_image[image_id] or int(index) in predicted:
                raise InputError(f"prediction file {pred}: entry {k}: narrative_index {index} is not a narrative "
                                 f"of image {image_id}, or is given twice")
            try:
                predicted[int(index)] = [(int(a), int(b)) for a, b in item["phrases"]]
            except (TypeError, ValueError) as exc:
                raise InputError(f"prediction file {pred}: entry {k}: phrases must be [[start, end], ...] "
                                 f"character spans ({exc})") from exc
        found = annotated = generated = 0
        for n in narratives:
            spans = set(predicted.get(n.index, ()))
            annotated += len(n.caption.phrases)
            generated += len(predicted.get(n.index, ()))
            found += sum((p.start, p.end) in spans for p in n.caption.phrases)
        return {"noun_recall": found / annotated if annotated else math.nan,
                "noun_precision": found / generated if generated else math.nan}


__all__ = ["NounExtractionEvaluator"]
