"""Colorizers: EntityMasks → Colormap (one colour per entity)."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    register("colorizer", "random", "esgkit.components.colorizers.colorizers:RandomColorizer")
    register("colorizer", "location", "esgkit.components.colorizers.colorizers:LocationColorizer")
