"""Decoders: the GELLA mask decoder (fused pyramid → entity queries, entityness, masks)."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("mask_decoder", "mask2former", "esgkit.components.decoders.mask2former:Mask2FormerMaskDecoder",
             "Mask2Former pixel + masked-attention decoder (transformers blocks) → E_vc, entityness, masks")
