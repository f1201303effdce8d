"""The referring pipeline: an optional segmenter (entity proposals) + a text encoder + a referrer —
PBREC-MT, and the other referring systems as they join — run on one image and expression, or on a
RefCOCO-style dataset for ``esgkit eval`` (``res``: cIoU, gIoU, Prec@X; ``rec``: Acc@0.5).

The trained weights of the text encoder and the referrer are one file (``pipeline.checkpoint``,
keys ``text_encoder.*`` and ``referrer.*``). A text encoder that comes with pretrained weights of its
own and was frozen in training (the shipped MiniLM) is left out of that file."""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esgkit.core import (Dataset, EntityMasks, Pipeline, Predictions, Referral, Referrer, Segmenter, TextEncoder,
                         TextFeatures)
from esgkit.core.errors import CompatibilityError, ConfigError, InputError
from esgkit.core.io import save_image
from esgkit.core.outputs import atomic_write, atomic_write_json
from esgkit.core.text import text_table
from esgkit.core.types import encode_rle
from esgkit.layers.painting import FILL_ALPHA, contrast, draw_label, draw_overlay, font_for, label_size, place_labels
from esgkit.layers.weights import load_state, read_state_dict

from ..colormap import warn_no_entities

MASK_COLOR, BOX_COLOR = (40, 220, 80), (255, 40, 40)
"""overlay.png: the referred mask in green, the box in red."""


class ReferringModel(nn.Module):
    """The trainable part of a referring pipeline: ``text_encoder`` and ``referrer`` under those names.
    With ``train_text=False`` the text encoder is kept outside the module tree (not trained, not in
    the state dict) and run without gradients."""

    def __init__(self, text_encoder: TextEncoder, referrer: Referrer, train_text: bool = True) -> None:
        super().__init__()
        self.referrer = referrer
        if train_text:
            self.text_encoder = text_encoder
        else:
            object.__setattr__(self, "frozen_text", text_encoder)
        self.train_text = train_text

    @property
    def text(self) -> TextEncoder:
        return self.text_encoder if self.train_text else self.frozen_text  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        if self.train_text:
            return self.text_encoder.encode(texts)  # type: ignore[operator,union-attr]
        encoder: Any = self.frozen_text
        device = next(self.referrer.parameters()).device  # type: ignore[attr-defined]
        if next(encoder.parameters()).device != device:
            encoder.to(device)
        encoder.eval()
        with torch.no_grad():
            return encoder.encode(texts)

    def load(self, path: str) -> None:
        """Load a referring checkpoint; ``text_encoder.*`` keys may be absent when the text encoder is
        pretrained (it keeps its own weights)."""
        state = read_state_dict(path, "referring checkpoint")
        text: Any = self.text
        optional = {f"text_encoder.{k}" for k in text.state_dict()} if text.pretrained else set()
        holder = nn.ModuleDict({"text_encoder": text, "referrer": self.referrer})
        load_state(holder, state, f"referring checkpoint {path}", optional=optional)


@dataclass
class ReferringResult:
    expression: str
    referral: Referral
    proposals: EntityMasks | None

    def to_dict(self, shape: tuple[int, int]) -> dict[str, Any]:
        """referral.json: the box, score, entities and the mask as RLE (``Referral.mask_or_empty``), as
        ``esgkit run`` writes it and the UI serves it."""
        r, mask = self.referral, self.referral.mask_or_empty(shape)
        return {"expression": self.expression, "box": [round(v, 2) for v in r.box], "score": r.score,
                "box_entity": r.box_entity, "mask_entity": r.mask_entity,
                "proposals": None if self.proposals is None else len(self.proposals),
                "segmentation": encode_rle(mask)}


class ReferringPipeline(Pipeline):
    """Find what an expression refers to: a box (REC) and a mask (RES)."""

    slots = {"segmenter": "segmenter", "text_encoder": "text_encoder", "referrer": "referrer"}
    weights_key = "pipeline.checkpoint"
    trained_configs = ("pbrec_mt_tiny", "cmpc_tiny")
    inputs = frozenset({"masks", "image_id", "expression"})

    @dataclass
    class Config:
        checkpoint: str = ""   # the trained text encoder + referrer (.safetensors)
        proposals: bool = True  # run the segmenter for entity proposals (false: referrers that need none)
        alpha: float = FILL_ALPHA  # opacity of the mask's fill in overlay.png (outline and box are opaque)

    def __init__(self, config: ReferringPipeline.Config, segmenter: Segmenter, text_encoder: TextEncoder,
                 referrer: Referrer) -> None:
        self.config, self.segmenter, self.referrer = config, segmenter, referrer
        referrer.configure(text_encoder.embed_dim)
        self.model = ReferringModel(text_encoder, referrer)
        if config.checkpoint:
            self.model.load(config.checkpoint)
        self.model.eval()
        self.check()

    @classmethod
    def wrap(cls, config: ReferringPipeline.Config, segmenter: Segmenter, model: ReferringModel) -> ReferringPipeline:
        """A pipeline around an already built (e.g. training) ``ReferringModel``: nothing is configured
        or loaded again."""
        pipeline = cls.__new__(cls)
        pipeline.config, pipeline.segmenter, pipeline.referrer, pipeline.model = config, segmenter, model.referrer, model
        pipeline.check()
        return pipeline

    def check(self) -> None:
        if self.referrer.needs_proposals and not self.config.proposals:
            raise CompatibilityError(f"referrer {type(self.referrer).__name__} ranks entity proposals; set "
                                     "pipeline.proposals=true and a segmenter")

    def refer(self, image: np.ndarray, expressions: Sequence[str], masks: EntityMasks | None = None,
              image_id: str | None = None) -> tuple[EntityMasks | None, list[Referral]]:
        """The proposals (None without) and one Referral per expression; the image is encoded once."""
        proposals = self.segmenter.segment(image, annotation=masks, image_id=image_id) if self.config.proposals else None
        if proposals is not None and len(proposals) == 0:
            warn_no_entities(self.segmenter, image_id, "every expression gets an empty box and mask")
        with torch.no_grad():
            text = self.model.encode(list(expressions))
            return proposals, self.referrer.refer(image, text, proposals)

    def run(self, image: np.ndarray, expression: str | None = None, masks: EntityMasks | None = None,
            image_id: str | None = None) -> ReferringResult:
        if expression is None:
            raise InputError("the referring pipeline needs an expression: give --expression \"the leftmost red "
                             "square\" (Pipeline.run(image, expression=...))")
        proposals, (referral,) = self.refer(image, [expression], masks, image_id)
        if referral.mask is not None and not referral.mask.any() and (proposals is None or len(proposals)):
            warnings.warn(f"{type(self.referrer).__name__} found nothing for {expression!r}: the mask is empty "
                          f"(score {referral.score:.3f})", stacklevel=2)
        return ReferringResult(expression, referral, proposals)

    def write(self, result: ReferringResult, out_dir: str, image: np.ndarray) -> list[str]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        r, mask = result.referral, result.referral.mask_or_empty(image.shape[:2])
        paths = [out / "referral.json", out / "mask.png", out / "overlay.png"]
        atomic_write_json(paths[0], result.to_dict(image.shape[:2]))
        save_image(paths[1], (mask * 255).astype(np.uint8))
        save_image(paths[2], draw_referral(image, r, result.expression, self.config.alpha))
        return [str(p) for p in paths]

    def summary(self, result: ReferringResult) -> str:
        """expression → box, score, mask area: the table ``esgkit run`` prints."""
        r = result.referral
        area = "-" if r.mask is None else f"{int(r.mask.sum())} px ({r.mask.mean():.1%})"
        box = ", ".join(f"{v:.0f}" for v in r.box)
        return text_table([("expression", "box x, y, w, h", "score", "mask area"),
                           (result.expression, box, f"{r.score:.2f}", area)], right={2})

    def predict(self, dataset: Dataset, out_dir: str, *, max_images: int = 0, skip: Collection[str] = (),
                progress: bool = True) -> list[Predictions]:
        """Every referring expression of the first ``max_images`` images: masks for ``res`` and boxes
        for ``rec`` (parts named so in ``skip`` are left out)."""
        unknown = sorted(set(skip) - {"res", "rec"})
        if unknown:
            raise ConfigError(f"the referring pipeline predicts res and rec; cannot skip {', '.join(unknown)}")
        parts = [p for p in ("res", "rec") if p not in skip]
        if not parts:
            return []
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        image_ids, masks_out, boxes_out, empty = [], [], [], 0
        for i in dataset.take(max_images, progress="refer" if progress else ""):
            sample = dataset[i]
            refs = sample.get("refs")
            if refs is None:
                raise InputError(f"dataset {type(dataset).__name__} has no referring expressions (sample key 'refs'); "
                                 "use a RefCOCO-format dataset (refcoco, shapesworld)")
            image_id = str(sample["image_id"])
            image_ids.append(image_id)
            if not refs:
                continue
            _, referrals = self.refer(sample["image"], [r["sent"] for r in refs], sample.get("masks"), image_id)
            for ref, referral in zip(refs, referrals):
                mask = referral.mask_or_empty(sample["image"].shape[:2])
                empty += not mask.any()
                masks_out.append({"sent_id": ref["sent_id"], "segmentation": encode_rle(mask), "score": referral.score})
                boxes_out.append({"sent_id": ref["sent_id"], "bbox": list(referral.box), "score": referral.score})
        if empty:
            warnings.warn(f"{empty} of {len(masks_out)} expressions got an empty mask from "
                          f"{type(self.referrer).__name__}", stacklevel=2)
        out = []
        for part, items in (("res", masks_out), ("rec", boxes_out)):
            if part in parts:
                pred = atomic_write(folder / f"{part}_pred.json", json.dumps(items))
                gt, options = dataset.ground_truth(part, image_ids, str(folder / f"{part}_gt"))
                out.append(Predictions(part, gt, str(pred), options, name=part))
        return out


def draw_referral(image: np.ndarray, referral: Referral, expression: str, alpha: float = FILL_ALPHA) -> np.ndarray:
    """The mask lightly filled and outlined in green (``draw_overlay``), the box in red with a dark
    halo, and the expression on a label just above the box (inside it when there is no room), kept
    inside the image: cut short with "…" when wider than the image."""
    from PIL import Image, ImageDraw

    masks = [referral.mask] if referral.mask is not None and referral.mask.any() else []
    canvas = Image.fromarray(draw_overlay(image, masks, [MASK_COLOR], alpha=alpha))
    draw = ImageDraw.Draw(canvas)
    x, y, w, h = referral.box
    if w > 0 and h > 0:
        width = max(2, round(max(image.shape) / 256))
        draw.rectangle((x - 1, y - 1, x + w, y + h), outline=contrast(BOX_COLOR), width=width + 2)
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=BOX_COLOR, width=width)
    font = font_for(*image.shape[:2])
    text = expression
    while len(text) > 1 and label_size(text, font)[0] > image.shape[1]:
        text = text[:-2] + "…"
    lw, lh = label_size(text, font)
    (box,) = place_labels([(x + lw / 2, y - lh / 2 - 2 if y >= lh + 2 else y + lh / 2 + 2)], [(lw, lh)],
                          image.shape[:2], reach=0)
    if box is not None:
        draw_label(draw, box, text, BOX_COLOR, font)
    return np.asarray(canvas)


__all__ = ["BOX_COLOR", "MASK_COLOR", "ReferringModel", "ReferringPipeline", "ReferringResult", "draw_referral"]
