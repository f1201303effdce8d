"""Shared building blocks that components, pipelines and training stand on (as timm's and
detectron2's ``layers/``): ``backbones`` (timm backbones cut as a pyramid, one grid, chosen levels or
stages), ``geometry`` (the paper's resize-and-pad square, ImageNet inputs, mask boxes, valid cells),
``fusion`` (MUTAN bilinear fusion), ``recurrent`` (ConvLSTM), ``query_attention`` (QRNet's
expression-generated gates), ``transformer`` and ``positions`` (the referring encoders' transformer
and sine positions), ``painting`` (colormaps and overlays), ``overlap`` (box and mask IoU, entity ↔
segment overlaps), ``points`` and ``matching`` (point sampling, Hungarian query ↔ entity matching),
``weights`` (the one weights I/O: safetensors or ``weights_only`` torch files, Hugging Face folders,
run folders, one key-mismatch report) and ``llava_checkpoint`` (the LLaVA key layout). They import
only ``esgkit.core``."""

from esgkit.core.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("PyramidBackbone", "build_pyramid_backbone"), "backbones"),
    **dict.fromkeys(("resize_pad", "sample_masks"), "geometry"),
    **dict.fromkeys(("draw_entities", "draw_overlay", "paint"), "painting"),
    "point_sample": "points",
    **dict.fromkeys(("MatchCosts", "hungarian_match"), "matching"),
    **dict.fromkeys(("load_state", "load_weights", "read_state_dict", "weights_path"), "weights"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
