"""Evaluating any pipeline on any dataset (what ``esgkit eval`` runs): the pipeline's ``predict``
writes prediction files with their ground truth, and each is scored by the registered evaluator it
names, so the numbers are the benchmark's own and the files can be re-scored with ``esgkit score``."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from esgkit.core import Dataset, Pipeline, Predictions, get_registry


def score_predictions(predictions: Sequence[Predictions]) -> dict[str, float]:
    """Score each prediction file with its evaluator; metrics renamed or picked by ``keys``."""
    registry = get_registry()
    metrics: dict[str, float] = {}
    for p in predictions:
        evaluator = registry.build("evaluator", {"name": p.evaluator, **p.options}, key=f"evaluator ({p.name or p.evaluator})")
        for key, value in evaluator.score(p.gt, p.pred).items():  # type: ignore[attr-defined]
            if p.keys is None:
                metrics[key] = value
            elif key in p.keys:
                metrics[p.keys[key]] = value
    return metrics


def evaluate(pipeline: Pipeline, dataset: Dataset, out_dir: str | Path | None = None, *, max_images: int = 0,
             skip: Collection[str] = (), progress: bool = True) -> dict[str, Any]:
    """The metrics of ``pipeline`` on the first ``max_images`` samples of ``dataset`` (0 = all), plus
    ``images`` (how many). Prediction files go to ``out_dir`` (a temporary folder when None). To
    reuse a segmenter's masks across evaluations, put it behind
    ``esgkit.pipelines.segment_cache.cached_segmenter`` first (what ``esgkit eval`` does)."""
    n = len(dataset.take(max_images))
    if n == 0:
        warnings.warn(f"dataset {type(dataset).__name__} has no samples: nothing is evaluated", stacklevel=2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        predictions = pipeline.predict(dataset, str(folder), max_images=n, skip=skip, progress=progress)
        metrics: dict[str, Any] = score_predictions(predictions)
    metrics["images"] = float(n)
    return metrics


__all__ = ["evaluate", "score_predictions"]
