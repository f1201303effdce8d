"""GELLA's predictions on a dataset (``GellaPipeline.predict``, what ``esgkit eval`` scores).

Three parts per image, each written in a benchmark's own prediction format with the matching ground
truth (``Dataset.ground_truth``), so the registered evaluators score them as they would any method:

* **PNG grounding** (``png``: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5): the segmenter's entity
  masks (the dataset's ground truth with ``segmenter: ground_truth``) are GELLA's input; the
  caption's annotated noun phrases are teacher-forced as the answer (prompt + "phrase <SEG>, …"), so
  E_vl comes from the annotated phrases — the benchmark gives the phrases, the model grounds them.
* **Noun extraction** (part ``nouns``): the phrases the model generates itself from the noun prompt
  (``nouns`` evaluator: ``noun_recall``, ``noun_precision``), and the PNG score of grounding them,
  ``AR_generated`` (an annotated phrase that was not generated gets an empty mask).
* **Referring expressions** (part ``res``; ``res`` evaluator: cIoU, gIoU, Prec@X): the RES prompt with
  the expression; the predicted mask is the union of the entities grounded for the first phrase the
  model names (empty when it names none).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esgkit.core import Caption, Dataset, Grounding, LanguageOutput, PhraseGrounding, Predictions
from esgkit.core.types import encode_rle
from esgkit.datasets.png import png_predictions

PARTS = ("png", "nouns", "res")


def visual_pass(pipeline: Any, image: np.ndarray, masks: Any) -> tuple[torch.Tensor, Any, np.ndarray]:
    """Z_v, the mask decoder's output with E_vc ready for the associator, and each query's entity."""
    pixels = pipeline.vision_encoder.preprocess(image)[None].to(pipeline.device)
    mask_in = pipeline.mask_input(masks, image)[None].to(pipeline.device)
    z_v, out = pipeline.visual_forward(pixels, mask_in)
    query_entity = pipeline.match_queries(out.masks[0], masks, out.entityness[0])
    e_vc = pipeline.entity_embeddings(out, [torch.from_numpy(query_entity)], [pipeline.entity_grid(masks, out)],
                                      [pipeline.entity_shapes(masks)])
    return z_v, dataclasses.replace(out, embeddings=e_vc), query_entity


def teacher_forced_grounding(pipeline: Any, caption: Caption, masks: Any, z_v: torch.Tensor, out: Any,
                             query_entity: np.ndarray) -> Grounding:
    """Ground the caption's annotated phrases, E_vl read at their teacher-forced <SEG> tokens."""
    lang = pipeline.language_decoder
    phrases = caption.phrases
    if not phrases:
        return Grounding(caption, (), masks)
    inputs = lang.collate([lang.build_inputs("grounding", caption.text, [p.text for p in phrases], z_v.shape[1])])
    fwd = lang(z_v, **{k: v.to(z_v.device) for k, v in inputs.items()})
    e_vl = fwd.seg_embeddings[0].to(out.embeddings.dtype)
    logits = pipeline.associator(e_vl, out.embeddings[0])
    result = LanguageOutput(text="", phrases=tuple(phrases), seg_embeddings=e_vl, caption=caption)
    return pipeline.ground(result, caption.text, logits, query_entity, masks)


def generated_grounding(pipeline: Any, text: str, z_v: torch.Tensor, out: Any, query_entity: np.ndarray,
                        masks: Any, task: str = "nouns") -> Grounding:
    """The pipeline's own path: generate the phrases of ``text`` with ``task``'s prompt, then ground them."""
    lang = pipeline.language_decoder.extract(z_v, text, task=task)
    logits = pipeline.associator(lang.seg_embeddings.to(out.embeddings.dtype), out.embeddings[0])
    return pipeline.ground(lang, text, logits, query_entity, masks)


def predict(pipeline: Any, dataset: Dataset, out_dir: str, max_images: int = 0, skip: Collection[str] = (),
            progress: bool = True) -> list[Predictions]:
    """The three parts of the module docstring on the first ``max_images`` samples (0 = all)."""
    unknown = set(skip) - set(PARTS)
    if unknown:
        from esgkit.core.errors import ConfigError

        raise ConfigError(f"GELLA predicts {', '.join(PARTS)}; cannot skip {', '.join(sorted(unknown))}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    nouns, res = "nouns" not in skip, "res" not in skip
    png_pred: list[dict[str, Any]] = []
    png_gen: list[dict[str, Any]] = []
    noun_pred: list[dict[str, Any]] = []
    res_pred: list[dict[str, Any]] = []
    image_ids: list[str] = []
    was_training = pipeline.model.training
    pipeline.model.eval()
    try:
        with torch.no_grad():
            for i in dataset.take(max_images, progress="GELLA predict" if progress else ""):
                # the ground truth is cut down to the predicted images: entries name the image only
                sample = {k: v for k, v in dataset[i].items() if k != "narrative_index"}
                image_ids.append(str(sample["image_id"]))
                image, caption = sample["image"], sample["caption"]
                masks = pipeline.segmenter.segment(image, annotation=sample.get("masks"), image_id=image_ids[-1])
                z_v, out, query_entity = visual_pass(pipeline, image, masks)
                png_pred += png_predictions(sample, teacher_forced_grounding(pipeline, caption, masks, z_v, out,
                                                                             query_entity))
                if nouns:
                    gen = generated_grounding(pipeline, caption.text, z_v, out, query_entity, masks)
                    spans = {(g.phrase.start, g.phrase.end): g for g in gen.groundings}
                    noun_pred.append({"image_id": sample["image_id"], "phrases": [[g.phrase.start, g.phrase.end]
                                                                                  for g in gen.groundings]})
                    copied = [PhraseGrounding(p, spans[(p.start, p.end)].entity_ids, spans[(p.start, p.end)].scores)
                              if (p.start, p.end) in spans else PhraseGrounding(p, (), ()) for p in caption.phrases]
                    png_gen += png_predictions(sample, Grounding(caption, tuple(copied), masks))
                if res:
                    for ref in sample.get("refs", []):
                        g = generated_grounding(pipeline, ref["sent"], z_v, out, query_entity, masks, task="res")
                        mask = g.phrase_mask(0) if g.groundings else np.zeros(masks.image_size, bool)
                        res_pred.append({"sent_id": int(ref["sent_id"]), "segmentation": encode_rle(mask)})
    finally:
        pipeline.model.train(was_training)

    def write(name: str, data: list[dict[str, Any]]) -> str:
        path = folder / name
        path.write_text(json.dumps(data))
        return str(path)

    gt, options = dataset.ground_truth("png", image_ids, str(folder))
    out = [Predictions("png", gt, write("png_pred.json", png_pred), options, name="png")]
    if nouns:
        out.append(Predictions("png", gt, write("png_pred_generated.json", png_gen), options,
                               keys={"AR": "AR_generated"}, name="nouns"))
        out.append(Predictions("nouns", gt, write("nouns_pred.json", noun_pred), name="nouns"))
    if res:
        refs, ref_options = dataset.ground_truth("res", image_ids, str(folder))
        out.append(Predictions("res", refs, write("res_pred.json", res_pred), ref_options, name="res"))
    return out


__all__ = ["PARTS", "generated_grounding", "predict", "teacher_forced_grounding", "visual_pass"]
