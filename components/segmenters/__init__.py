"""Segmenters: RGB image → class-agnostic EntityMasks."""

from esgkit.core.checkpoints import weights_path  # noqa: F401  (re-exported for the segmenters)


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    register("segmenter", "ground_truth", "esgkit.components.segmenters.annotations:GroundTruthSegmenter")
    register("segmenter", "from_files", "esgkit.components.segmenters.annotations:FromFilesSegmenter")
    register("segmenter", "cropformer", "esgkit.components.segmenters.cropformer.segmenter:CropFormerSegmenter",
             "CropFormer: full image + 4 corner crops fused at original resolution (ESG §4.1).")
    register("segmenter", "mask2former", "esgkit.components.segmenters.cropformer.segmenter:Mask2FormerSegmenter",
             "Mask2Former baseline: CropFormer's network on the full image only.")
    register("segmenter", "sam", "esgkit.components.segmenters.sam:SamSegmenter",
             "Segment Anything automatic masks (presets sam1/sam2) as non-overlapping entities.")
