"""Assembled pipelines and their YAML configs (pipelines/configs/)."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    register("pipeline", "colormap", "esgkit.pipelines.colormap:ColormapPipeline")
    register("pipeline", "gella", "esgkit.pipelines.gella:GellaPipeline",
             "GELLA: ground a caption's nouns onto entity masks from any segmenter")
