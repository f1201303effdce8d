"""Encoders, one folder per kind: ``colormap/`` (the ``colormap_encoder`` kind: colormap → feature
pyramid) and ``vision/`` (the ``vision_encoder`` kind: image → CLIP grid tokens Z_v)."""

__all__: list[str] = []
