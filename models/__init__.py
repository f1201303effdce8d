"""The models esgkit ships, one folder each: its weights (safetensors), its model card
(``README.md``: the exact commands, seeds and measured results) and what was measured (``eval.json``,
benchmarks). Configs name them relative to the package, e.g.
``checkpoint: models/gella_tiny/gella_tiny.safetensors``. No code lives here."""

__all__: list[str] = []
