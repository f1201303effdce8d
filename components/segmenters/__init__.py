"""The ``segmenter`` kind: RGB image → class-agnostic EntityMasks. Families: ``annotations`` (masks
given in advance: ground truth, files), ``cropformer`` (CropFormer and its Mask2Former baseline),
``sam`` (segment-anything's automatic masks)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("segmenter", "ground_truth", "annotations:GroundTruthSegmenter",
     "the entity masks given with the image (a dataset's ground truth, or --masks FILE)"),
    ("segmenter", "from_files", "annotations:FromFilesSegmenter",
     "entity masks read from a folder of per-image files (any segmenter's saved output)"),
    ("segmenter", "cropformer", "cropformer.segmenter:CropFormerSegmenter",
     "CropFormer: full image + 4 corner crops fused at original resolution (ESG §4.1)"),
    ("segmenter", "mask2former", "cropformer.segmenter:Mask2FormerSegmenter",
     "Mask2Former baseline: CropFormer's network on the full image only"),
    ("segmenter", "sam", "sam:SamSegmenter",
     "Segment Anything automatic masks (presets sam1/sam2) as non-overlapping entities"),
])
