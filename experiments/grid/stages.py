"""Pipeline stages and the grid's stage cache.

A pipeline's stages say which config sections each reads. A pipeline class may declare them itself
(``stages = (Stage("masks", ("segmenter",)), ...)``); ``DEFAULT_STAGES`` declares those of the built-in
pipelines. A stage with a store is computed once per (sub-config, weights, image) and reused by every
cell whose sub-config is the same: the ``masks`` stage is stored by ``esgkit.pipelines.segment_cache``
in ``GRID/cache/masks/`` (keyed by the segmenter's name, config and weights digest, and the image's
pixels). Before the cells of an eval-only grid run, ``stage_jobs`` lists one job per distinct segmenter
and chunk of images, so each image is segmented once — spread over the executor's workers — and every
cell then reads the masks (its segmenter is built only if an image is missing). The other stages
(``Z_v``, ``grounding``) are recomputed per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cells import digest, weights_hashes
from .spec import EvalData


@dataclass(frozen=True)
class Stage:
    """A stage's name, the config sections it reads, and whether the grid stores its output."""

    name: str
    reads: tuple[str, ...]
    stored: bool = False


DEFAULT_STAGES: dict[str, tuple[Stage, ...]] = {
    "gella": (Stage("masks", ("segmenter",), stored=True), Stage("Z_v", ("vision_encoder",)),
              Stage("grounding", ("pipeline", "colorizer", "colormap_encoder", "fuser", "mask_decoder",
                                  "language_decoder", "associator"))),
    "colormap": (Stage("masks", ("segmenter",), stored=True), Stage("colormap", ("pipeline", "colorizer"))),
    "referring": (Stage("masks", ("segmenter",), stored=True), Stage("referral", ("pipeline", "text_encoder", "referrer"))),
}


def stages_of(pipeline_name: str) -> tuple[Stage, ...]:
    """The stages of a registered pipeline: its class's own ``stages``, else ``DEFAULT_STAGES``."""
    from esgkit.core import get_registry

    cls = get_registry().get("pipeline", pipeline_name, "pipeline.name")
    return tuple(getattr(cls, "stages", ()) or DEFAULT_STAGES.get(pipeline_name, ()))


def stage_key(config: Mapping[str, Any], stage: Stage) -> str:
    """The hash of the sub-config a stage reads (with the hashes of the weights it names)."""
    sub = {section: config.get(section) for section in stage.reads}
    return digest({"stage": stage.name, "config": sub, "weights": weights_hashes(sub)})


@dataclass
class StageJob:
    """Compute (or find) the ``masks`` stage of one segmenter on some images of a dataset."""

    stage: str
    key: str
    section: dict[str, Any]
    on: EvalData
    indices: list[int]
    cache: str


def masks_stage_key(config: Mapping[str, Any]) -> str | None:
    """The key of a cell's stored ``masks`` stage, or None when its pipeline stores none or its
    segmenter's output is not worth caching (``Segmenter.cacheable``: ground truth, files)."""
    from esgkit.core import get_registry

    pipeline = config.get("pipeline") or {}
    name = pipeline if isinstance(pipeline, str) else str(pipeline.get("name", ""))
    section = config.get("segmenter")
    for stage in stages_of(name):
        if stage.stored and stage.name == "masks" and isinstance(section, Mapping):
            cls = get_registry().get("segmenter", str(section.get("name")), "segmenter.name")
            return stage_key(config, stage) if getattr(cls, "cacheable", True) else None
    return None


def masks_stage_sections(configs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stage key → segmenter section, over the cells that store a ``masks`` stage (``masks_stage_key``)."""
    sections: dict[str, dict[str, Any]] = {}
    for config in configs:
        key = masks_stage_key(config)
        if key is not None:
            sections.setdefault(key, dict(config["segmenter"]))
    return sections


def stage_jobs(configs: Sequence[Mapping[str, Any]], on: EvalData, images: int, cache: str,
               chunks: int) -> list[StageJob]:
    """One job per distinct stored stage and chunk of the first ``images`` images (``chunks`` per stage)."""
    jobs = []
    chunks = max(1, min(chunks, images))
    for key, section in masks_stage_sections(configs).items():
        for c in range(chunks):
            indices = list(range(c, images, chunks))
            if indices:
                jobs.append(StageJob("masks", key, section, on, indices, cache))
    return jobs


def run_stage(job: StageJob) -> dict[str, Any]:
    """Segment the job's images into the cache; returns its hits and misses and the segmenter's
    identity (the cells read its masks through it without building the segmenter)."""
    from esgkit.core import get_registry
    from esgkit.pipelines.segment_cache import CachedSegmenter, cached_segmenter

    registry = get_registry()
    dataset = job.on.build()
    segmenter = cached_segmenter(registry.build("segmenter", job.section, key="segmenter"), job.cache)  # type: ignore[arg-type]
    for i in job.indices:
        sample = dataset[i]
        segmenter.segment(sample["image"], annotation=sample.get("masks"), image_id=str(sample["image_id"]))
    if not isinstance(segmenter, CachedSegmenter):
        return {"stage": job.stage, "key": job.key, "hits": 0, "misses": 0, "identity": None}
    return {"stage": job.stage, "key": job.key, "hits": segmenter.hits, "misses": segmenter.misses,
            "identity": segmenter.identity}


__all__ = ["DEFAULT_STAGES", "Stage", "StageJob", "masks_stage_key", "masks_stage_sections", "run_stage", "stage_jobs",
           "stage_key", "stages_of"]
