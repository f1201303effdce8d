"""esgkit evaluation: the paper's metrics as ``evaluator`` components, each scoring prediction files
against ground-truth files in the documented formats (docs/formats.md); ``esgkit score`` runs one on
any method's files, ``esgkit eval`` runs a pipeline's ``predict`` on a dataset and scores what it
wrote (``run.evaluate``)."""

from esgkit.core.lazy import lazy_exports

__all__ = ["EntityEvaluator", "NounExtractionEvaluator", "PNGEvaluator", "PanopticEvaluator", "RECEvaluator",
           "RESEvaluator", "evaluate", "register_builtins", "score_predictions"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "PNGEvaluator": "png", "RESEvaluator": "referring", "RECEvaluator": "referring", "EntityEvaluator": "entity",
    "PanopticEvaluator": "panoptic", "NounExtractionEvaluator": "nouns", "evaluate": "run",
    "score_predictions": "run",
})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("evaluator", "png", f"{__name__}.png:PNGEvaluator",
             "Panoptic Narrative Grounding: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5")
    register("evaluator", "nouns", f"{__name__}.nouns:NounExtractionEvaluator",
             "noun extraction: recall and precision of a model's own noun phrases (exact caption spans)")
    register("evaluator", "res", f"{__name__}.referring:RESEvaluator",
             "Referring segmentation: cIoU, gIoU, Prec@0.5-0.9")
    register("evaluator", "rec", f"{__name__}.referring:RECEvaluator",
             "Referring comprehension: Acc@0.5 of boxes")
    register("evaluator", "entity", f"{__name__}.entity:EntityEvaluator",
             "Class-agnostic entity AP (APe, AP50, AP75) with pycocotools; H and L variants")
    register("evaluator", "panoptic", f"{__name__}.panoptic:PanopticEvaluator",
             "Panoptic quality PQ, SQ, RQ (all / things / stuff)")
