"""The ``colorizer`` kind: EntityMasks → Colormap (one colour per entity, black background)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("colorizer", "random", "colorizers:RandomColorizer",
     "random distinct colours per entity, reproducible from a seed (the paper's default)"),
    ("colorizer", "location", "colorizers:LocationColorizer",
     "location-aware colours from each entity's centroid (Painter-style, Table XV(b))"),
])
