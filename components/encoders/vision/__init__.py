"""The ``vision_encoder`` kind: an RGB image → low-resolution grid tokens Z_v. Families: ``clip``
(open_clip ViT towers) and ``llava_clip`` (a LLaVA checkpoint's own CLIP tower, so LLaVA-1.5 weights
load without a second CLIP)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("vision_encoder", "clip", "clip:ClipVisionEncoder",
     "open_clip ViT → last-layer patch tokens; aspect-preserving resize + zero pad (tiny default)"),
    ("vision_encoder", "llava_clip", "llava_clip:LlavaClipVisionEncoder",
     "a LLaVA checkpoint's own CLIP tower → Z_v (penultimate layer, CLS dropped), so LLaVA loads without a second CLIP"),
], {"ClipGridEncoder": "clip"})
