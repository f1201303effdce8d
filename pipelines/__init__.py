"""Assembled pipelines by family — ``colormap`` (a segmenter and a colorizer), ``gella/`` (GELLA)
— and their shipped YAML configs (``pipelines/configs/``). Pipelines import components, never
training, evaluation or experiments."""

from esgkit.core.lazy import lazy_exports

__all__ = ["ColormapPipeline", "GellaPipeline", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"ColormapPipeline": "colormap", "GellaPipeline": "gella.pipeline"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("pipeline", "colormap", f"{__name__}.colormap:ColormapPipeline",
             "a segmenter then a colorizer: entity masks, colormap and overlay (APe with `esgkit eval`)")
    register("pipeline", "gella", f"{__name__}.gella.pipeline:GellaPipeline",
             "GELLA: ground a caption's nouns onto entity masks from any segmenter")
