"""The ``referrer`` kind: image + encoded expressions (+ entity proposals from any segmenter) → a box
and a mask per expression. Families: ``pbrec`` (PBREC-MT, seed 003), ``cmpc`` (CMPC-I + TGFE, seed 002), ``qrnet`` (QRNet and
UniQRNet, seed 001)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("referrer", "pbrec_mt", "pbrec:PBRECReferrer",
     "PBREC-MT: center-ness / mass-ness over a fused grid; any segmenter's entities voted as proposals"),
    ("referrer", "cmpc", "cmpc:CMPCReferrer",
     "CMPC-I + TGFE: word types, entity perception, relation graph, level exchange, ConvLSTM → mask"),
    ("referrer", "qrnet", "qrnet:QRNetReferrer",
     "QRNet / UniQRNet: expression-gated Swin stages (QD-ATT), fusion encoder, box head (+ mask head)"),
])
