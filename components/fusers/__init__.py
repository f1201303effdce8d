"""Fusers: blend the CLIP grid tokens Z_v into the colormap feature pyramid Z_c."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("fuser", "resoblend", "esgkit.components.fusers.resoblend:ResoBlendFuser",
             "ResoBlend: CLIP tokens cross-attend to each colormap level (SA/CA/FF/RES/CONV switches)")
    register("fuser", "none", "esgkit.components.fusers.resoblend:IdentityFuser",
             "no fusion: the colormap pyramid passes through unchanged")
