"""The swappable parts, one folder per component kind (each registers its own built-ins):
``segmenters/``, ``colorizers/``, ``encoders/colormap/``, ``encoders/vision/``, ``fusers/``,
``decoders/`` (mask decoders), ``llms/`` (language decoders), ``associators/``. Components import
only ``esgkit.core`` and the shared building blocks of ``esgkit.layers``, never each other."""

__all__: list[str] = []
