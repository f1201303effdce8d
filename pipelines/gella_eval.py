"""Evaluating a GELLA pipeline on a ShapesWorld split (what ``esgkit eval`` runs).

Three measurements per image, each with the benchmark's own evaluator on files it could score for
any method (the predictions and the ground truth of the images used are written to a folder):

* **PNG grounding** (``png`` evaluator: AR, AR_th, AR_st, AR_sing, AR_pl, acc@0.5): the ground-truth
  entity masks are GELLA's input; the caption's annotated noun phrases are teacher-forced as the
  answer (prompt + "phrase <SEG>, …"), so E_vl comes from the annotated phrases — the benchmark gives
  the phrases, the model grounds them. ``AR_generated`` repeats this with the phrases the model
  itself generated (a ground-truth phrase that was not generated gets an empty mask).
* **Noun extraction** (``noun_recall``): the share of the caption's annotated noun phrases that the
  model generated (same span of the caption) from the noun prompt; ``noun_precision`` the share of
  generated phrases that are annotated ones.
* **Referring expressions** (``res`` evaluator: cIoU, gIoU, Prec@X): the RES prompt with the
  expression; the predicted mask is the union of the entities grounded for the first phrase the
  model names (empty when it names none).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esgkit.core import Caption, Grounding, LanguageOutput, PhraseGrounding
from esgkit.core.types import encode_rle

from .gella_train import open_split


def _visual(pipeline: Any, sample: dict[str, Any]) -> tuple[torch.Tensor, Any, np.ndarray]:
    masks = sample["masks"]
    pixels = pipeline.vision_encoder.preprocess(sample["image"])[None].to(pipeline.device)
    mask_in = pipeline.mask_input(masks, sample["image"])[None].to(pipeline.device)
    z_v, out = pipeline.visual_forward(pixels, mask_in)
    query_entity = pipeline.match_queries(out.masks[0], masks, out.entityness[0])
    e_vc = pipeline.entity_embeddings(out, [torch.from_numpy(query_entity)], [pipeline.entity_grid(masks, out)],
                                      [pipeline.entity_shapes(masks)])
    return z_v, dataclasses.replace(out, embeddings=e_vc), query_entity


def teacher_forced_grounding(pipeline: Any, sample: dict[str, Any], z_v: torch.Tensor, out: Any,
                             query_entity: np.ndarray) -> Grounding:
    """Ground the sample's annotated phrases, E_vl read at their teacher-forced <SEG> tokens."""
    lang = pipeline.language_decoder
    caption: Caption = sample["caption"]
    phrases = caption.phrases
    if not phrases:
        return Grounding(caption, (), sample["masks"])
    inputs = lang.collate([lang.build_inputs("grounding", caption.text, [p.text for p in phrases], z_v.shape[1])])
    fwd = lang(z_v, **{k: v.to(z_v.device) for k, v in inputs.items()})
    e_vl = fwd.seg_embeddings[0].to(out.embeddings.dtype)
    logits = pipeline.associator(e_vl, out.embeddings[0])
    result = LanguageOutput(text="", phrases=tuple(phrases), seg_embeddings=e_vl, caption=caption)
    return pipeline.ground(result, caption.text, logits, query_entity, sample["masks"])


def generated_grounding(pipeline: Any, text: str, z_v: torch.Tensor, out: Any, query_entity: np.ndarray,
                        masks: Any, task: str = "nouns") -> Grounding:
    """The pipeline's own path: generate the phrases of ``text`` with ``task``'s prompt, then ground them."""
    lang = pipeline.language_decoder.extract(z_v, text, task=task)
    logits = pipeline.associator(lang.seg_embeddings.to(out.embeddings.dtype), out.embeddings[0])
    return pipeline.ground(lang, text, logits, query_entity, masks)


def _subset_png_gt(root: Path, split: str, image_ids: list[str], folder: Path) -> Path:
    narratives = json.loads((root / "annotations" / f"png_coco_{split}.json").read_text())
    keep = set(image_ids)
    path = folder / f"png_coco_{split}.json"
    path.write_text(json.dumps([n for n in narratives if str(n["image_id"]) in keep]))
    return path


def _subset_refs(root: Path, split: str, image_ids: list[str], folder: Path) -> Path:
    refs = json.loads((root / f"refcoco_{split}" / "refs(unc).json").read_text())
    keep = set(image_ids)
    path = folder / "refs(unc).json"
    path.write_text(json.dumps([r for r in refs if str(r["image_id"]) in keep]))
    return path


def evaluate_pipeline(pipeline: Any, data_dir: str | Path, split: str = "val", max_images: int = 0,
                      res: bool = True, nouns: bool = True, out_dir: str | Path | None = None,
                      progress: bool = True) -> dict[str, float]:
    """All metrics of the module docstring on the first ``max_images`` images (0 = all) of ``split``."""
    from esgkit.core import get_registry
    from esgkit.evaluation.png import png_predictions

    root = Path(data_dir)
    dataset = open_split(root, split)
    n = min(len(dataset), max_images) if max_images > 0 else len(dataset)
    registry = get_registry()
    tmp = tempfile.TemporaryDirectory() if out_dir is None else None
    folder = Path(out_dir) if out_dir is not None else Path(tmp.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    png_pred, png_gen, res_pred = [], [], []
    found = annotated = generated = 0
    image_ids = []
    bar = range(n)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"eval {split}", unit="img")
    was_training = pipeline.model.training
    pipeline.model.eval()
    try:
        with torch.no_grad():
            for i in bar:
                sample = dataset[i]
                image_ids.append(str(sample["image_id"]))
                sample = {**sample, "narrative_index": len(image_ids) - 1}  # index in the subset GT file
                z_v, out, query_entity = _visual(pipeline, sample)
                caption: Caption = sample["caption"]
                png_pred += png_predictions(sample, teacher_forced_grounding(pipeline, sample, z_v, out, query_entity))
                if nouns:
                    gen = generated_grounding(pipeline, caption.text, z_v, out, query_entity, sample["masks"])
                    spans = {(g.phrase.start, g.phrase.end): g for g in gen.groundings}
                    annotated += len(caption.phrases)
                    generated += len(gen.groundings)
                    copied = []
                    for p in caption.phrases:
                        g = spans.get((p.start, p.end))
                        found += g is not None
                        copied.append(PhraseGrounding(p, g.entity_ids if g else (), g.scores if g else ()))
                    png_gen += png_predictions(sample, Grounding(caption, tuple(copied), sample["masks"]))
                if res:
                    for ref in sample.get("refs", []):
                        g = generated_grounding(pipeline, ref["sent"], z_v, out, query_entity, sample["masks"], task="res")
                        mask = g.phrase_mask(0) if g.groundings else np.zeros(sample["masks"].image_size, bool)
                        res_pred.append({"sent_id": int(ref["sent_id"]), "segmentation": encode_rle(mask)})
    finally:
        pipeline.model.train(was_training)

    panoptic = {"panoptic_json": str(root / "annotations" / f"panoptic_{split}.json"),
                "panoptic_dir": str(root / "annotations" / f"panoptic_{split}")}
    png_eval = registry.build("evaluator", {"name": "png", **panoptic}, key="evaluator")
    gt = _subset_png_gt(root, split, image_ids, folder)
    (folder / "png_pred.json").write_text(json.dumps(png_pred))
    metrics = dict(png_eval.score(str(gt), str(folder / "png_pred.json")))
    if nouns:
        (folder / "png_pred_generated.json").write_text(json.dumps(png_gen))
        metrics["AR_generated"] = png_eval.score(str(gt), str(folder / "png_pred_generated.json"))["AR"]
        metrics["noun_recall"] = found / annotated if annotated else math.nan
        metrics["noun_precision"] = found / generated if generated else math.nan
    if res:
        refs = _subset_refs(root, split, image_ids, folder)
        (folder / "res_pred.json").write_text(json.dumps(res_pred))
        res_eval = registry.build("evaluator", {"name": "res", "instances_json": str(root / f"refcoco_{split}" / "instances.json")},
                                  key="evaluator")
        metrics.update(res_eval.score(str(refs), str(folder / "res_pred.json")))
    metrics["images"] = float(n)
    if tmp is not None:
        tmp.cleanup()
    return metrics


__all__ = ["evaluate_pipeline", "generated_grounding", "teacher_forced_grounding"]
