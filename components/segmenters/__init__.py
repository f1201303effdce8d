"""Segmenters: RGB image → class-agnostic EntityMasks."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    register("segmenter", "ground_truth", "esgkit.components.segmenters.annotations:GroundTruthSegmenter")
    register("segmenter", "from_files", "esgkit.components.segmenters.annotations:FromFilesSegmenter")
