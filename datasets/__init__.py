"""esgkit datasets: readers for COCO-panoptic, Panoptic Narrative Grounding, RefCOCO and EntitySeg
files, and the ShapesWorld synthetic benchmark that is written in those same formats.
Sample keys of every reader are listed in docs/formats.md."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("dataset", "coco_panoptic", "coco_panoptic:CocoPanopticDataset",
     "COCO-panoptic images with their segments as entity masks"),
    ("dataset", "png", "png:PNGDataset",
     "Panoptic Narrative Grounding: narratives grounded on COCO-panoptic segments"),
    ("dataset", "refcoco", "refcoco:RefCocoDataset",
     "RefCOCO-style referring expressions (refs pickle/JSON + COCO instances)"),
    ("dataset", "entityseg", "entityseg:EntitySegDataset",
     "EntitySeg-style class-agnostic entity masks (COCO JSON with RLE)"),
    ("dataset", "shapesworld", "shapesworld:ShapesWorldDataset",
     "ShapesWorld split with panoptic masks, narrative, referring expressions and description"),
], {"generate": "shapesworld"})
