"""The ``fuser`` kind: blend the CLIP grid tokens Z_v into the colormap feature pyramid Z_c."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("fuser", "resoblend", "resoblend:ResoBlendFuser",
     "ResoBlend: CLIP tokens cross-attend to each colormap level (SA/CA/FF/RES/CONV switches)"),
    ("fuser", "none", "resoblend:IdentityFuser",
     "no fusion: the colormap pyramid passes through unchanged"),
])
