"""The ``mask_decoder`` kind: GELLA's mask decoder, fused pyramid → entity queries E_vc, entityness,
masks. (The language decoder is the ``language_decoder`` kind, in ``components/llms/``.)"""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("mask_decoder", "mask2former", "mask2former:Mask2FormerMaskDecoder",
     "Mask2Former pixel + masked-attention decoder (transformers blocks) → E_vc, entityness, masks"),
])
