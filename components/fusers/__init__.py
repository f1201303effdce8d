"""The ``fuser`` kind: blend the CLIP grid tokens Z_v into the colormap feature pyramid Z_c."""

from esgkit.core.lazy import lazy_exports

__all__ = ["IdentityFuser", "ResoBlendFuser", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"ResoBlendFuser": "resoblend", "IdentityFuser": "resoblend"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("fuser", "resoblend", f"{__name__}.resoblend:ResoBlendFuser",
             "ResoBlend: CLIP tokens cross-attend to each colormap level (SA/CA/FF/RES/CONV switches)")
    register("fuser", "none", f"{__name__}.resoblend:IdentityFuser",
             "no fusion: the colormap pyramid passes through unchanged")
