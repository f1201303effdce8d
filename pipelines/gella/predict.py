"""GELLA's predictions on a dataset (``GellaPipeline.predict``, what ``esgkit eval`` scores).

Parts per image, each written in a benchmark's own prediction format with the matching ground
truth (``Dataset.ground_truth``), so the registered evaluators score them as they would any method:

* **PNG grounding** (``png``: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5): the segmenter's entity
  masks (the dataset's ground truth with ``segmenter: ground_truth``) are GELLA's input; the
  caption's annotated noun phrases are teacher-forced as the answer (prompt + "phrase <SEG>, …"), so
  E_vl comes from the annotated phrases — the benchmark gives the phrases, the model grounds them.
* **Mask-limited upper bound** (part ``oracle``: ``AR_oracle``, ``AR_oracle_th``, …): each annotated
  phrase given the best single entity of the segmenter's masks (linked to one segment) or the best
  union of them (linked to several, as the PNG metrics count plurals; ``layers/overlap.best_union``):
  how much those masks allow any grounding to reach.
* **Noun extraction** (part ``nouns``): the phrases the model generates itself from the noun prompt
  (``nouns`` evaluator: ``noun_recall``, ``noun_precision``), and the PNG score of grounding them,
  ``AR_generated`` (an annotated phrase that was not generated gets an empty mask).
* **Panoptic segmentation by category prompt** (part ``panoptic``; ``panoptic`` evaluator: PQ, SQ, RQ,
  things / stuff): every category of the dataset's panoptic ground truth prompted at once
  (``pipelines/gella/panoptic.py``); skipped with a warning when the dataset has no panoptic ground truth.
* **Referring expressions** (part ``res``; ``res`` evaluator: cIoU, gIoU, Prec@X): the RES prompt with
  the expression; the predicted mask is the union of the entities grounded for the first phrase the
  model names (empty when it names none).
* **Reconstruction** (part ``reconstruction``; ``entity`` evaluator: ``APe_rec``, ``AP50_rec``,
  ``AP75_rec``; Table XVI(a)): how well the mask decoder's queries reproduce the masks it was given —
  class-agnostic COCO AP of the query masks (scored by entityness) against the input entity masks,
  both on the colormap's ``mask_size`` square (what the colormap encoder sees; entities too small to
  cover a pixel there are left out).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esgkit.core import Caption, Dataset, Grounding, InputError, LanguageOutput, PhraseGrounding, Predictions
from esgkit.core.io import save_id_map_png
from esgkit.core.outputs import atomic_write
from esgkit.core.types import encode_rle
from esgkit.datasets.png import png_predictions
from esgkit.layers.geometry import sample_masks
from esgkit.layers.overlap import best_union, segment_overlaps

from .panoptic import category_caption, panoptic_segments

PARTS = ("png", "oracle", "nouns", "res", "panoptic", "reconstruction")
RECONSTRUCTION_KEYS = {k: f"{k}_rec" for k in ("APe", "AP50", "AP75")}
ORACLE_KEYS = {k: k.replace("AR", "AR_oracle") for k in ("AR", "AR_th", "AR_st", "AR_sing", "AR_pl")}


def visual_pass(pipeline: Any, image: np.ndarray, masks: Any) -> tuple[torch.Tensor, Any, np.ndarray]:
    """Z_v, the mask decoder's output with E_vc ready for the associator, and each query's entity."""
    pixels = pipeline.vision_encoder.preprocess(image)[None].to(pipeline.device)
    mask_in = pipeline.mask_input(masks, image)[None].to(pipeline.device)
    z_v, out = pipeline.visual_forward(pixels, mask_in)
    query_entity = pipeline.match_queries(out.masks[0], masks, out.entityness[0])
    e_vc = pipeline.entity_embeddings(out, [torch.from_numpy(query_entity)], [pipeline.entity_grid(masks, out)],
                                      [pipeline.entity_shapes(masks)])
    return z_v, dataclasses.replace(out, embeddings=e_vc), query_entity


def teacher_forced_logits(pipeline: Any, caption: Caption, z_v: torch.Tensor, out: Any) -> torch.Tensor:
    """v×q association logits of the caption's phrases, E_vl read at their teacher-forced <SEG> tokens."""
    lang = pipeline.language_decoder
    inputs = lang.collate([lang.build_inputs("grounding", caption.text, [p.text for p in caption.phrases], z_v.shape[1])])
    fwd = lang(z_v, **{k: v.to(z_v.device) for k, v in inputs.items()})
    return pipeline.associator(fwd.seg_embeddings[0].to(out.embeddings.dtype), out.embeddings[0])


def teacher_forced_grounding(pipeline: Any, caption: Caption, masks: Any, z_v: torch.Tensor, out: Any,
                             query_entity: np.ndarray) -> Grounding:
    """Ground the caption's annotated phrases (``teacher_forced_logits``)."""
    if not caption.phrases:
        return Grounding(caption, (), masks)
    logits = teacher_forced_logits(pipeline, caption, z_v, out)
    result = LanguageOutput(text="", phrases=tuple(caption.phrases), seg_embeddings=logits.new_zeros(0), caption=caption)
    return pipeline.ground(result, caption.text, logits, query_entity, masks)


def generated_grounding(pipeline: Any, text: str, z_v: torch.Tensor, out: Any, query_entity: np.ndarray,
                        masks: Any, task: str = "nouns") -> Grounding:
    """The pipeline's own path: generate the phrases of ``text`` with ``task``'s prompt, then ground them."""
    lang = pipeline.language_decoder.extract(z_v, text, task=task)
    logits = pipeline.associator(lang.seg_embeddings.to(out.embeddings.dtype), out.embeddings[0])
    return pipeline.ground(lang, text, logits, query_entity, masks)


def prompt_scores(pipeline: Any, categories: list[dict[str, Any]], z_v: torch.Tensor, out: Any,
                  query_entity: np.ndarray, n_entities: int) -> np.ndarray:
    """(C, N) association scores of the category prompt's phrases (part ``panoptic``) with the entities."""
    names = [pipeline.config.panoptic_names.get(c["name"], c["name"]) for c in categories]
    logits = teacher_forced_logits(pipeline, category_caption(pipeline.config.panoptic_prompt, names), z_v, out)
    return pipeline.entity_scores(logits, query_entity, n_entities)


def oracle_grounding(sample: dict[str, Any], masks: Any) -> Grounding:
    """The best grounding ``masks`` allow for the sample's annotated phrases (part ``oracle``)."""
    gt, caption = sample["masks"], sample["caption"]
    position = {int(i): k for k, i in enumerate(gt.ids)}
    overlaps = segment_overlaps(masks.masks, gt.masks) if len(masks) else np.zeros((0, len(gt)), np.int64)
    areas = masks.masks.sum((1, 2))
    groundings = []
    for phrase, segments in zip(caption.phrases, sample["phrase_segments"]):
        rows = [position[int(s)] for s in segments if int(s) in position]
        target = gt.masks[rows].any(0) if rows else np.zeros(gt.image_size, bool)
        # plural as the benchmark counts it: a phrase linked to several segments
        chosen = best_union(masks.masks, target, len(segments) > 1, overlaps[:, rows].sum(1), areas)
        groundings.append(PhraseGrounding(phrase, masks.ids[chosen].tolist(), [1.0] * len(chosen)))
    return Grounding(caption, tuple(groundings), masks)


def reconstruction(pipeline: Any, masks: Any, out: Any, image_id: Any) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                                 list[dict[str, Any]]]:
    """Part ``reconstruction`` of one image: its COCO image entry, the input masks as annotations and
    the query masks (upsampled from the decoder's grid) as detections, on the ``mask_size`` square."""
    size = int(pipeline.config.mask_size)
    image = {"id": image_id, "height": size, "width": size}
    annotations = [{"id": 0, "image_id": image_id, "category_id": 1, "segmentation": encode_rle(m), "iscrowd": 0}
                   for m in sample_masks(masks.masks, size, (size, size)) if m.any()]
    logits = torch.nn.functional.interpolate(out.masks[:1].float(), size=(size, size), mode="bilinear",
                                             align_corners=False)[0]
    scores = out.entityness[0].float().softmax(-1)[:, 0]
    detections = [{"image_id": image_id, "segmentation": encode_rle((m > 0).cpu().numpy()), "score": float(s)}
                  for m, s in zip(logits, scores) if bool((m > 0).any())]
    return image, annotations, detections


def panoptic_categories(dataset: Dataset, folder: Path) -> list[dict[str, Any]] | None:
    """The categories of the dataset's panoptic ground truth, or None (with a warning) without one."""
    try:
        gt, _ = dataset.ground_truth("panoptic", [], str(folder))
    except InputError:
        warnings.warn(f"dataset {type(dataset).__name__} has no panoptic ground truth: the panoptic part is skipped",
                      stacklevel=3)
        return None
    return [{k: c[k] for k in ("id", "name", "isthing") if k in c} for c in json.loads(Path(gt).read_text())["categories"]]


def predict(pipeline: Any, dataset: Dataset, out_dir: str, max_images: int = 0, skip: Collection[str] = (),
            progress: bool = True) -> list[Predictions]:
    """The parts of the module docstring on the first ``max_images`` samples (0 = all)."""
    unknown = set(skip) - set(PARTS)
    if unknown:
        from esgkit.core.errors import ConfigError

        raise ConfigError(f"GELLA predicts {', '.join(PARTS)}; cannot skip {', '.join(sorted(unknown))}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    nouns, res, oracle = "nouns" not in skip, "res" not in skip, "oracle" not in skip
    rec: dict[str, list[dict[str, Any]]] | None = None if "reconstruction" in skip else \
        {"images": [], "annotations": [], "detections": []}
    categories = panoptic_categories(dataset, folder) if "panoptic" not in skip else None
    pan_dir = folder / "panoptic_pred"
    pan_pred: list[dict[str, Any]] = []
    png_pred: list[dict[str, Any]] = []
    png_oracle: list[dict[str, Any]] = []
    png_gen: list[dict[str, Any]] = []
    noun_pred: list[dict[str, Any]] = []
    res_pred: list[dict[str, Any]] = []
    image_ids: list[str] = []
    no_entities = 0
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
                no_entities += len(masks) == 0
                z_v, out, query_entity = visual_pass(pipeline, image, masks)
                png_pred += png_predictions(sample, teacher_forced_grounding(pipeline, caption, masks, z_v, out,
                                                                             query_entity))
                if oracle:
                    png_oracle += png_predictions(sample, oracle_grounding(sample, masks))
                if rec is not None:
                    entry, annotations, detections = reconstruction(pipeline, masks, out, sample["image_id"])
                    rec["images"].append(entry)
                    rec["annotations"] += annotations
                    rec["detections"] += detections
                if nouns:
                    gen = generated_grounding(pipeline, caption.text, z_v, out, query_entity, masks)
                    spans = {(g.phrase.start, g.phrase.end): g for g in gen.groundings}
                    noun_pred.append({"image_id": sample["image_id"], "phrases": [[g.phrase.start, g.phrase.end]
                                                                                  for g in gen.groundings]})
                    copied = [PhraseGrounding(p, spans[(p.start, p.end)].entity_ids, spans[(p.start, p.end)].scores)
                              if (p.start, p.end) in spans else PhraseGrounding(p, (), ()) for p in caption.phrases]
                    png_gen += png_predictions(sample, Grounding(caption, tuple(copied), masks))
                if categories is not None:
                    scores = prompt_scores(pipeline, categories, z_v, out, query_entity, len(masks))
                    id_map, segments = panoptic_segments(scores, masks, categories, pipeline.config.panoptic_threshold)
                    pan_dir.mkdir(exist_ok=True)
                    save_id_map_png(pan_dir / f"{image_ids[-1]}.png", id_map)
                    pan_pred.append({"image_id": sample["image_id"], "file_name": f"{image_ids[-1]}.png",
                                     "segments_info": segments})
                if res:
                    for ref in sample.get("refs", []):
                        g = generated_grounding(pipeline, ref["sent"], z_v, out, query_entity, masks, task="res")
                        mask = g.phrase_mask(0) if g.groundings else np.zeros(masks.image_size, bool)
                        res_pred.append({"sent_id": int(ref["sent_id"]), "segmentation": encode_rle(mask)})
    finally:
        pipeline.model.train(was_training)
    if no_entities:
        name = getattr(pipeline.segmenter, "identity", {}).get("name") or type(pipeline.segmenter).__name__
        warnings.warn(f"the segmenter ({name}) found no entity on {no_entities} of {len(image_ids)} images: "
                      "every phrase of those images scores an empty mask", stacklevel=3)

    def write(name: str, data: Any) -> str:
        return str(atomic_write(folder / name, json.dumps(data)))

    gt, options = dataset.ground_truth("png", image_ids, str(folder))
    out = [Predictions("png", gt, write("png_pred.json", png_pred), options, name="png")]
    if oracle:
        out.append(Predictions("png", gt, write("png_pred_oracle.json", png_oracle), options, keys=ORACLE_KEYS,
                               name="oracle"))
    if nouns:
        out.append(Predictions("png", gt, write("png_pred_generated.json", png_gen), options,
                               keys={"AR": "AR_generated"}, name="nouns"))
        out.append(Predictions("nouns", gt, write("nouns_pred.json", noun_pred), name="nouns"))
    if categories is not None:
        pan_gt, pan_options = dataset.ground_truth("panoptic", image_ids, str(folder))
        pan_file = folder / "panoptic_pred.json"
        atomic_write(pan_file, json.dumps({"annotations": pan_pred, "categories": categories}))
        out.append(Predictions("panoptic", pan_gt, str(pan_file), pan_options, name="panoptic"))
    if res:
        refs, ref_options = dataset.ground_truth("res", image_ids, str(folder))
        out.append(Predictions("res", refs, write("res_pred.json", res_pred), ref_options, name="res"))
    if rec is not None:
        for k, a in enumerate(rec["annotations"]):
            a["id"] = k + 1
        given = write("reconstruction_gt.json", {"images": rec["images"], "annotations": rec["annotations"],
                                                 "categories": [{"id": 1, "name": "entity"}]})
        out.append(Predictions("entity", given, write("reconstruction_pred.json", rec["detections"]),
                               keys=RECONSTRUCTION_KEYS, name="reconstruction"))
    return out


__all__ = ["ORACLE_KEYS", "PARTS", "RECONSTRUCTION_KEYS", "generated_grounding", "oracle_grounding",
           "panoptic_categories", "predict", "prompt_scores", "reconstruction", "teacher_forced_grounding",
           "teacher_forced_logits", "visual_pass"]
