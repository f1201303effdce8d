"""Encoders: colormap encoders (timm backbones → feature pyramid) and the CLIP vision encoder."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    colormap = "esgkit.components.encoders.colormap"
    register("colormap_encoder", "timm", f"{colormap}:TimmColormapEncoder",
             "any timm backbone (features_only, strides 4-32) on the colormap")
    register("colormap_encoder", "mobilenetv2", f"{colormap}:MobileNetV2ColormapEncoder",
             "paper's MobileNetV2 colormap encoder (tiny default mobilenetv2_035; paper mobilenetv2_100)")
    register("colormap_encoder", "swin_tiny", f"{colormap}:SwinTinyColormapEncoder",
             "Swin-T colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-T)")
    register("colormap_encoder", "swin_large", f"{colormap}:SwinLargeColormapEncoder",
             "Swin-L colormap encoder, NHWC → NCHW (tiny by default; tiny=false = real Swin-L)")
    register("colormap_encoder", "binary_mask_pool", f"{colormap}:BinaryMaskPoolEncoder",
             "Table XIX alternative: each binary mask encoded alone and pooled (input: masks, cost ∝ N)")
    register("vision_encoder", "clip", "esgkit.components.encoders.clip:ClipVisionEncoder",
             "open_clip ViT → last-layer patch tokens; aspect-preserving resize + zero pad (tiny default)")
