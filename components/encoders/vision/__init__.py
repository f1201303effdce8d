"""The ``vision_encoder`` kind: an RGB image → low-resolution grid tokens Z_v. Families: ``clip``
(open_clip ViT towers) and ``llava_clip`` (a LLaVA checkpoint's own CLIP tower, so LLaVA-1.5 weights
load without a second CLIP)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["ClipGridEncoder", "ClipVisionEncoder", "LlavaClipVisionEncoder", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "ClipGridEncoder": "clip", "ClipVisionEncoder": "clip", "LlavaClipVisionEncoder": "llava_clip",
})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("vision_encoder", "clip", f"{__name__}.clip:ClipVisionEncoder",
             "open_clip ViT → last-layer patch tokens; aspect-preserving resize + zero pad (tiny default)")
    register("vision_encoder", "llava_clip", f"{__name__}.llava_clip:LlavaClipVisionEncoder",
             "a LLaVA checkpoint's own CLIP tower → Z_v (penultimate layer, CLS dropped), so LLaVA loads "
             "without a second CLIP")
