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
from esgkit.core.fields import ID, INDEX, SPANS
from esgkit.datasets.png import read_narratives

from .common import narrative_of, narratives_by_image, read_prediction_list


class NounExtractionEvaluator(Evaluator):
    """Noun extraction: recall and precision of the predicted phrase spans (noun_recall, noun_precision)."""

    @dataclass
    class Config:
        pass

    def __init__(self, config: NounExtractionEvaluator.Config) -> None:
        self.config = config

    def score(self, gt: str, pred: str) -> dict[str, float]:
        narratives = read_narratives(gt)
        by_image = narratives_by_image(narratives)
        predicted: dict[int, list[tuple[int, int]]] = {}
        entries = read_prediction_list(pred, {"image_id": ID, "phrases": SPANS}, {"narrative_index": INDEX})
        for k, item in enumerate(entries):
            index = narrative_of(item, by_image, gt, pred, k)
            if index in predicted:
                raise InputError(f"prediction file {pred}: entry {k} repeats narrative {index} of image {item['image_id']}")
            predicted[index] = [(a, b) for a, b in item["phrases"]]
        found = annotated = generated = 0
        for n in narratives:
            spans = set(predicted.get(n.index, ()))
            annotated += len(n.caption.phrases)
            generated += len(predicted.get(n.index, ()))
            found += sum((p.start, p.end) in spans for p in n.caption.phrases)
        return {"noun_recall": found / annotated if annotated else math.nan,
                "noun_precision": found / generated if generated else math.nan}


__all__ = ["NounExtractionEvaluator"]
