"""Assembled pipelines by family — ``colormap`` (a segmenter and a colorizer), ``gella/`` (GELLA),
``referring/`` (PBREC-MT, CMPC) — and their shipped YAML configs
(``pipelines/configs/``). Pipelines import components, never training, evaluation or experiments."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("pipeline", "colormap", "colormap:ColormapPipeline",
     "a segmenter then a colorizer: entity masks, colormap and overlay (APe with `esgkit eval`)"),
    ("pipeline", "gella", "gella.pipeline:GellaPipeline",
     "GELLA: ground a caption's nouns onto entity masks from any segmenter"),
    ("pipeline", "referring", "referring.pipeline:ReferringPipeline",
     "referring expressions: entity proposals + text encoder + referrer → box (REC) and mask (RES)"),
])
