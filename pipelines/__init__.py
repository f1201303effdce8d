"""Assembled pipelines and their YAML configs (pipelines/configs/)."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    register("pipeline", "colormap", "esgkit.pipelines.colormap:ColormapPipeline")
