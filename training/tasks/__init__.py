"""The built-in training tasks, registered as the ``task`` kind: ``gella`` (GELLA's losses on
ShapesWorld), ``cropformer`` / ``mask2former`` (the segmenter of a colormap config), ``sam`` (the tiny
SAM, point prompts). ``esgkit train`` picks one for a config (``esgkit.training.run.task_name``)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["CropFormerTask", "GellaTask", "SamTask", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"GellaTask": "gella", "CropFormerTask": "cropformer", "SamTask": "sam"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in tasks (lazy 'module:Class' factories)."""
    register("task", "gella", f"{__name__}.gella:GellaTask",
             "GELLA: L_seg + L_asso + L_ans on a ShapesWorld split, subtasks sampled per sample")
    crop = f"{__name__}.cropformer:CropFormerTask"
    register("task", "cropformer", crop, "CropFormer: image-level + batch-level set losses, full view + one crop")
    register("task", "mask2former", crop, "Mask2Former baseline: the image-level set loss on the full view")
    register("task", "sam", f"{__name__}.sam:SamTask", "tiny SAM: one-point prompts, min-of-3 focal+Dice, IoU head")
