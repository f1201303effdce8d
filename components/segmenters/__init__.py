"""The ``segmenter`` kind: RGB image → class-agnostic EntityMasks. Families: ``annotations`` (masks
given in advance: ground truth, files), ``cropformer`` (CropFormer and its Mask2Former baseline),
``sam`` (segment-anything's automatic masks)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["CropFormerSegmenter", "FromFilesSegmenter", "GroundTruthSegmenter", "Mask2FormerSegmenter",
           "SamSegmenter", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "GroundTruthSegmenter": "annotations", "FromFilesSegmenter": "annotations",
    "CropFormerSegmenter": "cropformer.segmenter", "Mask2FormerSegmenter": "cropformer.segmenter",
    "SamSegmenter": "sam",
})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("segmenter", "ground_truth", f"{__name__}.annotations:GroundTruthSegmenter",
             "the entity masks given with the image (a dataset's ground truth, or --masks FILE)")
    register("segmenter", "from_files", f"{__name__}.annotations:FromFilesSegmenter",
             "entity masks read from a folder of per-image files (any segmenter's saved output)")
    register("segmenter", "cropformer", f"{__name__}.cropformer.segmenter:CropFormerSegmenter",
             "CropFormer: full image + 4 corner crops fused at original resolution (ESG §4.1)")
    register("segmenter", "mask2former", f"{__name__}.cropformer.segmenter:Mask2FormerSegmenter",
             "Mask2Former baseline: CropFormer's network on the full image only")
    register("segmenter", "sam", f"{__name__}.sam:SamSegmenter",
             "Segment Anything automatic masks (presets sam1/sam2) as non-overlapping entities")
