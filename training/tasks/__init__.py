"""The built-in training tasks, registered as the ``task`` kind: ``gella`` (GELLA's losses on
ShapesWorld), ``cropformer`` / ``mask2former`` (the segmenter of a colormap config), ``sam`` (the tiny
SAM, point prompts), ``referring`` (PBREC-MT's comprehension stage on ShapesWorld refs),
``referring_masks`` (one-stage referring segmenters: CMPC), ``referring_joint`` (a box and a mask:
UniQRNet). ``esgkit train`` picks one for a config
(``esgkit.training.run.task_name``)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("task", "gella", "gella:GellaTask",
     "GELLA: L_seg + L_asso + L_ans on a ShapesWorld split, subtasks sampled per sample"),
    ("task", "cropformer", "cropformer:CropFormerTask",
     "CropFormer: image-level + batch-level set losses, full view + one crop"),
    ("task", "mask2former", "cropformer:CropFormerTask",
     "Mask2Former baseline: the image-level set loss on the full view"),
    ("task", "sam", "sam:SamTask",
     "tiny SAM: one-point prompts, min-of-3 focal+Dice, IoU head"),
    ("task", "referring", "referring:ReferringTask",
     "a referring pipeline's text encoder + referrer on ShapesWorld refs (PBREC-MT: soft center/mass-ness)"),
    ("task", "referring_masks", "referring:ReferringMaskTask",
     "a one-stage referring segmenter (CMPC) on ShapesWorld refs: final + per-level mask BCE"),
    ("task", "referring_joint", "referring:ReferringJointTask",
     "a box + mask referrer (UniQRNet) on ShapesWorld refs: L1 + GIoU, mask BCE + Dice, balanced"),
])
