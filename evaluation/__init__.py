"""esgkit evaluation: the paper's metrics as ``evaluator`` components, each scoring prediction files
against ground-truth files in the documented formats (docs/formats.md); ``esgkit score`` runs one on
any method's files, ``esgkit eval`` runs a pipeline's ``predict`` on a dataset and scores what it
wrote (``run.evaluate``)."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("evaluator", "png", "png:PNGEvaluator",
     "Panoptic Narrative Grounding: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5"),
    ("evaluator", "nouns", "nouns:NounExtractionEvaluator",
     "noun extraction: recall and precision of a model's own noun phrases (exact caption spans)"),
    ("evaluator", "res", "referring:RESEvaluator",
     "Referring segmentation: cIoU, gIoU, Prec@0.5-0.9"),
    ("evaluator", "rec", "referring:RECEvaluator",
     "Referring comprehension: Acc@0.5 of boxes"),
    ("evaluator", "entity", "entity:EntityEvaluator",
     "Class-agnostic entity AP (APe, AP50, AP75) with pycocotools; H and L variants"),
    ("evaluator", "panoptic", "panoptic:PanopticEvaluator",
     "Panoptic quality PQ, SQ, RQ (all / things / stuff)"),
], {"score_predictions": "run", "evaluate": "run"})
