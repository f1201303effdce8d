"""The ``mask_decoder`` kind: GELLA's mask decoder, fused pyramid → entity queries E_vc, entityness,
masks. (The language decoder is the ``language_decoder`` kind, in ``components/llms/``.)"""

from esgkit.core.lazy import lazy_exports

__all__ = ["Mask2FormerMaskDecoder", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"Mask2FormerMaskDecoder": "mask2former"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("mask_decoder", "mask2former", f"{__name__}.mask2former:Mask2FormerMaskDecoder",
             "Mask2Former pixel + masked-attention decoder (transformers blocks) → E_vc, entityness, masks")
