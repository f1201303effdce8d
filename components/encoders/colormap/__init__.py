"""The ``colormap_encoder`` kind: the entity colormap (or, for ``binary_mask_pool``, the masks
themselves) → a feature pyramid at strides 4, 8, 16, 32. Families: ``timm_backbones`` (any timm
backbone; the paper's MobileNetV2 and Swin presets), ``binary_mask_pool`` (Table XIX)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["BinaryMaskPoolEncoder", "MobileNetV2ColormapEncoder", "SwinLargeColormapEncoder",
           "SwinTinyColormapEncoder", "TimmColormapEncoder", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "TimmColormapEncoder": "timm_backbones", "MobileNetV2ColormapEncoder": "timm_backbones",
    "SwinTinyColormapEncoder": "timm_backbones", "SwinLargeColormapEncoder": "timm_backbones",
    "BinaryMaskPoolEncoder": "binary_mask_pool",
})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    timm = f"{__name__}.timm_backbones"
    register("colormap_encoder", "timm", f"{timm}:TimmColormapEncoder",
             "any timm backbone (features_only, strides 4-32) on the colormap")
    register("colormap_encoder", "mobilenetv2", f"{timm}:MobileNetV2ColormapEncoder",
             "paper's MobileNetV2 colormap encoder (tiny default mobilenetv2_035; paper mobilenetv2_100)")
    register("colormap_encoder", "swin_tiny", f"{timm}:SwinTinyColormapEncoder",
             "Swin-T colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-T)")
    register("colormap_encoder", "swin_large", f"{timm}:SwinLargeColormapEncoder",
             "Swin-L colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-L)")
    register("colormap_encoder", "binary_mask_pool", f"{__name__}.binary_mask_pool:BinaryMaskPoolEncoder",
             "Table XIX alternative: each binary mask encoded alone and pooled (input: masks, cost ∝ N)")
