"""The ``colormap_encoder`` kind: the entity colormap (or, for ``binary_mask_pool``, the masks
themselves) → a feature pyramid at strides 4, 8, 16, 32. Families: ``timm_backbones`` (any timm
backbone; the paper's MobileNetV2 and Swin presets), ``binary_mask_pool`` (Table XIX)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("colormap_encoder", "timm", "timm_backbones:TimmColormapEncoder",
     "any timm backbone (features_only, strides 4-32) on the colormap"),
    ("colormap_encoder", "mobilenetv2", "timm_backbones:MobileNetV2ColormapEncoder",
     "paper's MobileNetV2 colormap encoder (tiny default mobilenetv2_035; paper mobilenetv2_100)"),
    ("colormap_encoder", "swin_tiny", "timm_backbones:SwinTinyColormapEncoder",
     "Swin-T colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-T)"),
    ("colormap_encoder", "swin_large", "timm_backbones:SwinLargeColormapEncoder",
     "Swin-L colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-L)"),
    ("colormap_encoder", "binary_mask_pool", "binary_mask_pool:BinaryMaskPoolEncoder",
     "Table XIX alternative: each binary mask encoded alone and pooled (input: masks, cost ∝ N)"),
])
