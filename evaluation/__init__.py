"""esgkit evaluation: the paper's metrics as ``evaluator`` components, each scoring prediction files
against ground-truth files in the documented formats (docs/formats.md); ``esgkit score`` runs them."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("evaluator", "png", "esgkit.evaluation.png:PNGEvaluator",
             "Panoptic Narrative Grounding: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5")
    register("evaluator", "res", "esgkit.evaluation.referring:RESEvaluator",
             "Referring segmentation: cIoU, gIoU, Prec@0.5-0.9")
    register("evaluator", "rec", "esgkit.evaluation.referring:RECEvaluator",
             "Referring comprehension: Acc@0.5 of boxes")
    register("evaluator", "entity", "esgkit.evaluation.entity:EntityEvaluator",
             "Class-agnostic entity AP (APe, AP50, AP75) with pycocotools; H and L variants")
    register("evaluator", "panoptic", "esgkit.evaluation.panoptic:PanopticEvaluator",
             "Panoptic quality PQ, SQ, RQ (all / things / stuff)")
