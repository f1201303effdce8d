"""esgkit datasets: readers for COCO-panoptic, Panoptic Narrative Grounding, RefCOCO and EntitySeg
files, and the ShapesWorld synthetic benchmark that is written in those same formats.
Sample keys of every reader are listed in docs/formats.md."""

from esgkit.core.lazy import lazy_exports

__all__ = ["CocoPanopticDataset", "EntitySegDataset", "PNGDataset", "RefCocoDataset", "ShapesWorldDataset", "generate",
           "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CocoPanopticDataset": "coco_panoptic", "EntitySegDataset": "entityseg", "PNGDataset": "png",
    "RefCocoDataset": "refcoco", "ShapesWorldDataset": "shapesworld", "generate": "shapesworld",
})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("dataset", "coco_panoptic", "esgkit.datasets.coco_panoptic:CocoPanopticDataset",
             "COCO-panoptic images with their segments as entity masks")
    register("dataset", "png", "esgkit.datasets.png:PNGDataset",
             "Panoptic Narrative Grounding: narratives grounded on COCO-panoptic segments")
    register("dataset", "refcoco", "esgkit.datasets.refcoco:RefCocoDataset",
             "RefCOCO-style referring expressions (refs pickle/JSON + COCO instances)")
    register("dataset", "entityseg", "esgkit.datasets.entityseg:EntitySegDataset",
             "EntitySeg-style class-agnostic entity masks (COCO JSON with RLE)")
    register("dataset", "shapesworld", "esgkit.datasets.shapesworld:ShapesWorldDataset",
             "ShapesWorld split with panoptic masks, narrative, referring expressions and description")
