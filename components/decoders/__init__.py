"""The ``mask_decoder`` kind: GELLA's mask decoder, fused pyramid → entity queries E_vc, entityness,
masks (``mask2former``), or the Table XX alternatives whose queries are the input entities themselves,
read from Z_v and the entity masks (``roi_align``, ``mask_attention``; ``entity_queries.py``). (The
language decoder is the ``language_decoder`` kind, in ``components/llms/``.)"""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("mask_decoder", "mask2former", "mask2former:Mask2FormerMaskDecoder",
     "Mask2Former pixel + masked-attention decoder (transformers blocks) → E_vc, entityness, masks"),
    ("mask_decoder", "roi_align", "entity_queries:RoiAlignMaskDecoder",
     "Table XX: one query per input entity, RoI-Align of CLIP's Z_v in its box (no colormap)"),
    ("mask_decoder", "mask_attention", "entity_queries:MaskAttentionMaskDecoder",
     "Table XX: one query per input entity, cross-attention to Z_v with its mask added or multiplied in"),
])
