"""Referring expressions (REC boxes, RES masks): an optional segmenter's entity proposals + a text
encoder + a referrer. Modules: ``pipeline`` (the registered ``referring`` pipeline, its trainable
``ReferringModel`` and predictions for ``esgkit eval``), ``profile`` (parameters and FLOPs per part)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["ReferringModel", "ReferringPipeline", "ReferringResult", "profile_referring"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "ReferringModel": "pipeline", "ReferringPipeline": "pipeline", "ReferringResult": "pipeline",
    "profile_referring": "profile",
})
