"""The ``colorizer`` kind: EntityMasks → Colormap (one colour per entity, black background)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["LocationColorizer", "RandomColorizer", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"RandomColorizer": "colorizers", "LocationColorizer": "colorizers"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("colorizer", "random", f"{__name__}.colorizers:RandomColorizer",
             "random distinct colours per entity, reproducible from a seed (the paper's default)")
    register("colorizer", "location", f"{__name__}.colorizers:LocationColorizer",
             "location-aware colours from each entity's centroid (Painter-style, Table XV(b))")
