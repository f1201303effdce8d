"""GELLA (ESG paper §4.2): ground the nouns of a caption onto entity masks from any segmenter.

Modules: ``pipeline`` (the registered ``gella`` pipeline: assembly, one image, grounding, output,
weights), ``predict`` (its predictions on a dataset, for ``esgkit eval``), ``profile`` (parameters
and FLOPs per part, paper Tables XI/XII)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["GellaPipeline", "profile_config"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "GellaPipeline": "pipeline", "profile_config": "profile",
})
