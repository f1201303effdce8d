"""The GELLA grounding pipeline: image + entity masks (+ caption) → each noun phrase grounded onto
entity masks (paper section 4.2).

Data flow (one image)::

    segmenter → EntityMasks ─► colorizer → colormap ─► colormap_encoder → Z_c pyramid ┐
    image ─► vision_encoder (CLIP) → Z_v ─────────────────────────────► fuser ◄─────────┘
                     │                                                  │ Z_vc
                     │                                            mask_decoder → E_vc, entityness, masks
                     └─► language_decoder (caption) → phrases, E_vl ──► associator → v×q logits

Queries → input entities. The mask decoder is trained to reconstruct its input masks, so every query
is mapped back to an input entity by mask IoU: the query's mask (sigmoid > 0.5, stride 4) is
compared with every input mask resized the same way, and the query takes the entity of highest
IoU if that IoU ≥ ``min_iou`` (otherwise the query is dropped). With ``query_matching: hungarian``
the queries are instead assigned one-to-one to the entities by the training loss's own Hungarian
matching (entityness + mask BCE + Dice), so every entity keeps the query that L_asso trained for it,
even when that query's mask covers it poorly. A phrase's score for an entity is
the highest association probability σ(logit) among the queries mapped to it; the phrase is grounded
onto every entity whose score ≥ ``threshold`` (one-to-many: plural nouns get several entities);
with ``singular_top1`` (default) a singular phrase keeps only its best such entity, as the official
Panoptic Narrative Grounding evaluation does.

Entity queries (Table XX). A mask decoder with ``queries_are_entities`` (``roi_align``, ``mask_attention``)
has one query per input entity and reads Z_v and the masks (float (N, S, S), as ``binary_mask_pool``)
instead of the fused pyramid: the colormap encoder and fuser are built (their slots stay) but not run,
``colormap_image`` does not apply, and query i maps to entity i (-1 if its mask is empty at mask_size).

Geometry. The image goes to CLIP with the paper's aspect-preserving resize and zero padding to S×S;
the colormap (or, for ``binary_mask_pool``, the masks themselves) is resized and padded the same way
to ``mask_size``×``mask_size`` (nearest neighbour, so colours stay exact), so Z_v and Z_c cover the
same padded square.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from esgkit.core import (
    Associator, Caption, Colorizer, ColormapEncoder, CompatibilityError, Dataset, EntityMasks, Fuser, Grounding,
    InputError, LanguageDecoder, LanguageOutput, MaskDecoder, MaskDecoderOutput, Pipeline, PhraseGrounding,
    Predictions, Segmenter, VisionEncoder,
)
from esgkit.core.errors import ConfigError
from esgkit.core.text import EXAMPLE_CAPTION, text_table
from esgkit.layers.geometry import resize_pad, sample_masks
from esgkit.layers.matching import MatchCosts, hungarian_match
from esgkit.layers.painting import FILL_ALPHA, draw_overlay, paint, palette_color
from esgkit.layers.weights import load_state, read_state_dict

from ..colormap import no_entities_message
from . import predict as prediction

NEURAL_SLOTS = ("colormap_encoder", "vision_encoder", "fuser", "mask_decoder", "language_decoder", "associator")


def silhouettes(masks: np.ndarray, size: int) -> torch.Tensor:
    """bool (N, H, W) masks → float (N, size²): each mask cropped to the square around its bounding
    box (centred, zero padded) and area-resized to size×size — the entity's shape, whatever its size
    and position (``mask_decoder.silhouette_size``)."""
    out = torch.zeros(len(masks), size, size)
    for k, mask in enumerate(np.asarray(masks, bool)):
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        side = max(y1 - y0, x1 - x0)
        square = np.zeros((side, side), np.float32)
        oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
        square[oy : oy + y1 - y0, ox : ox + x1 - x0] = mask[y0:y1, x0:x1]
        crop = torch.from_numpy(square)[None, None]
        out[k] = torch.nn.functional.interpolate(crop, size=(size, size), mode="area" if side >= size else "nearest")[0, 0]
    return out.flatten(1)


def warn_if_empty(result: Grounding, caption: str | None, image_id: str | None, segmenter: Segmenter,
                  threshold: float) -> None:
    """One warning when a grounding is empty, saying which way and what to try: no entity to ground
    on, no noun phrase in the caption (or the model's description), or phrases that no entity scores
    ``threshold`` for. ``esgkit run`` prints it as its warning line (the summary does not repeat it)."""
    where = f"image {image_id!r}" if image_id else "the image"
    if len(result.masks) == 0:
        message = no_entities_message(segmenter, image_id, "there is nothing to ground the phrases on")
    elif not result.groundings:
        text = caption if caption is not None else result.caption.text
        source = "the caption" if caption is not None else f"the model's description of {where}"
        message = (f"no noun phrase found in {source} {_short(text)} (by the model's noun extraction): nothing to "
                   f"ground; give a --caption that names things, e.g. {EXAMPLE_CAPTION!r}")
    elif not any(g.entity_ids for g in result.groundings):
        phrases = ", ".join(repr(g.phrase.text) for g in result.groundings[:5])
        more = f" and {len(result.groundings) - 5} more" if len(result.groundings) > 5 else ""
        message = (f"no noun phrase ({phrases}{more}) was grounded on any of the {len(result.masks)} entities of "
                   f"{where}: no association reached pipeline.threshold = {threshold}; try a lower one "
                   f"(pipeline.threshold={threshold / 2:g})")
    else:
        return
    warnings.warn(message, stacklevel=4)  # the caller of run (through the input check)


def phrase_colors(result: Grounding) -> list[tuple[int, int, int]]:
    """One palette colour per grounding, in ``result.groundings`` order: phrases of equal text share
    one, so a phrase the caption repeats is one colour (and one legend row) wherever it is drawn."""
    index: dict[str, int] = {}
    return [palette_color(index.setdefault(g.phrase.text, len(index))) for g in result.groundings]


def format_table(result: Grounding) -> str:
    """noun → entity ids, best score: the table ``esgkit run`` and ``esgkit demo`` print."""
    rows = [("noun", "entities", "score")]
    for g in result.groundings:
        rows.append((g.phrase.text, ", ".join(str(i) for i in g.entity_ids) or "-",
                     f"{max(g.scores):.2f}" if g.scores else "-"))
    return text_table(rows, right={2})


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _name(role: str, component: Any) -> str:
    return f"{role} ({type(component).__name__})"


class GellaPipeline(Pipeline):
    """GELLA: ground the nouns of a caption onto entity masks from any segmenter."""

    slots = {
        "segmenter": "segmenter", "colorizer": "colorizer", "colormap_encoder": "colormap_encoder",
        "vision_encoder": "vision_encoder", "fuser": "fuser", "mask_decoder": "mask_decoder",
        "language_decoder": "language_decoder", "associator": "associator",
    }
    weights_key = "pipeline.checkpoint"
    trained_configs = ("gella_tiny_trained", "esg_tiny")
    inputs = frozenset({"masks", "caption", "image_id"})

    @dataclass
    class Config:
        mask_size: int = 128     # side of the padded square the colormap is fed at (paper preset: 1024)
        threshold: float = 0.5   # association probability needed to ground a phrase on an entity
        min_iou: float = 0.1     # iou matching: a query maps to its best-IoU input entity only above this IoU
        colormap_image: bool = False  # the colormap encoder also sees the image: its input is the colormap
                                      # and the RGB image at mask_size (6 channels; the encoder needs
                                      # options.in_chans: 6). Not the paper: for models trained from scratch
        query_matching: str = "iou"  # iou: every query → its best-IoU entity (many-to-one; an entity no query
                                     # covers well is lost) | hungarian: the one-to-one assignment of the
                                     # training loss (entityness + mask BCE + Dice), so every entity gets a query
        singular_top1: bool = True  # a singular phrase keeps only its best entity (PNG's official rule)
        checkpoint: str = ""     # optional .safetensors (or weights-only torch) file of all neural parts;
                                 # a relative path missing from the working folder is read from the
                                 # installed esgkit package (shipped weights: models/...)
        device: str = "cpu"
        alpha: float = FILL_ALPHA  # opacity of the fill in overlay.png (outlines and labels are opaque)
        meta_device: bool = False  # a paper-scale preset without weights: build it under
                                   # `with torch.device("meta")` (esgkit profile); it cannot run
        # panoptic segmentation by category prompt (paper §5.3.3; pipelines/gella/panoptic.py)
        panoptic_prompt: str = "There might exist {}."  # {} = the category names, comma separated
        panoptic_threshold: float = 0.5  # an entity whose best category scores below this is left void
        panoptic_names: dict[str, str] = field(default_factory=dict)  # category → the word prompted for it
                                         # (e.g. {circle: disc}: open-vocabulary runs); default its own name

    def __init__(self, config: Any, segmenter: Segmenter, colorizer: Colorizer, colormap_encoder: ColormapEncoder,
                 vision_encoder: VisionEncoder, fuser: Fuser, mask_decoder: MaskDecoder,
                 language_decoder: LanguageDecoder, associator: Associator) -> None:
        if config.query_matching not in ("iou", "hungarian"):
            raise ConfigError(f"unknown query_matching {config.query_matching!r}; one of iou, hungarian",
                              key="pipeline.query_matching")
        self.config = config
        self.segmenter, self.colorizer = segmenter, colorizer
        self.colormap_encoder, self.vision_encoder = colormap_encoder, vision_encoder
        self.fuser, self.mask_decoder = fuser, mask_decoder
        self.language_decoder, self.associator = language_decoder, associator
        # Size every part from its neighbours before any weights exist (interfaces' configure()).
        fuser.configure(vision_encoder.embed_dim, tuple(colormap_encoder.out_channels))
        if self.queries_are_entities:  # Z_v + masks in, not the colormap pyramid
            mask_decoder.configure_vision(vision_encoder.embed_dim)
        else:
            mask_decoder.configure(tuple(colormap_encoder.out_channels))
        language_decoder.configure(vision_encoder.embed_dim)
        associator.configure(language_decoder.embed_dim, mask_decoder.embed_dim)
        self.model = nn.ModuleDict({role: getattr(self, role) for role in NEURAL_SLOTS
                                    if isinstance(getattr(self, role), nn.Module)})
        if not config.meta_device:
            self.model.to(config.device)
        if config.checkpoint:
            self.load_checkpoint(config.checkpoint)

    # ------------------------------------------------------------------ build-time checks
    def check(self) -> None:
        """Raise CompatibilityError naming both components when connected parts disagree."""
        enc, vis = self.colormap_encoder, self.vision_encoder
        channels = tuple(enc.out_channels)
        if len(channels) != 4:
            raise CompatibilityError(f"{_name('colormap_encoder', enc)} gives {len(channels)} levels, but "
                                     f"{_name('mask_decoder', self.mask_decoder)} needs 4 (strides 4, 8, 16, 32)")
        pairs = [
            ("fuser", "vision_dim", "vision_encoder", vis.embed_dim),
            ("fuser", "pyramid_channels", "colormap_encoder", channels),
            ("mask_decoder", "pyramid_channels", "colormap_encoder", channels),
            ("mask_decoder", "vision_dim", "vision_encoder", vis.embed_dim),
            ("language_decoder", "vision_dim", "vision_encoder", vis.embed_dim),
            ("associator", "lang_dim", "language_decoder", self.language_decoder.embed_dim),
            ("associator", "entity_dim", "mask_decoder", self.mask_decoder.embed_dim),
        ]
        for role, attr, other, value in pairs:
            have = getattr(getattr(self, role), attr, None)
            if have is not None and (tuple(have) if isinstance(have, (list, tuple)) else have) != value:
                raise CompatibilityError(
                    f"{_name(role, getattr(self, role))} is sized for {attr} = {have}, but "
                    f"{_name(other, getattr(self, other))} gives {value}; rebuild one of them to match")
        size = self.config.mask_size
        if size <= 0 or size % 32:
            raise CompatibilityError(f"pipeline.mask_size = {size}: the colormap_encoder's stride-32 level "
                                     "needs a positive multiple of 32")
        need = getattr(getattr(enc, "config", None), "img_size", 0)
        if need and need != size:
            raise CompatibilityError(f"{_name('colormap_encoder', enc)} is built for img_size {need} but "
                                     f"the pipeline feeds it mask_size {size}; set colormap_encoder.img_size={size}")
        if self.config.colormap_image and not self.queries_are_entities:  # no colormap encoder runs then
            in_chans = (getattr(getattr(enc, "config", None), "options", None) or {}).get("in_chans", 3)
            if self.mask_input_kind != "colormap" or in_chans != 6:
                raise CompatibilityError(f"pipeline.colormap_image feeds 6 channels (colormap + image), but "
                                         f"{_name('colormap_encoder', enc)} takes {in_chans}; use a colormap "
                                         "encoder with colormap_encoder.options.in_chans=6")

    # ------------------------------------------------------------------ tensors
    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def queries_are_entities(self) -> bool:
        """The mask decoder has one query per input entity and reads Z_v + masks (Table XX)."""
        return bool(getattr(self.mask_decoder, "queries_are_entities", False))

    @property
    def mask_input_kind(self) -> str:
        """``colormap`` (the paper) or ``masks`` (the Table XIX binary-mask encoder, or a mask decoder
        whose queries are the entities): the ``input_kind`` of the part that reads the masks."""
        reader = self.mask_decoder if self.queries_are_entities else self.colormap_encoder
        return getattr(reader, "input_kind", "colormap")

    def mask_input(self, masks: EntityMasks, image: np.ndarray | None = None) -> torch.Tensor:
        """The mask input of one image (``mask_input_kind``), resized and padded to mask_size: the colormap
        as float (3, S, S) in [0, 1], or for ``input_kind == "masks"`` the masks as float (N, S, S).
        With ``colormap_image`` the image (needed then) follows the colormap as 3 more channels."""
        size = self.config.mask_size
        if self.mask_input_kind == "masks":
            return torch.from_numpy(sample_masks(masks.masks, size, (size, size))).float()
        return self.with_image(self.colormap(masks), image)

    def colormap(self, masks: EntityMasks, colors: np.ndarray | None = None) -> torch.Tensor:
        """The colormap as float (3, S, S) in [0, 1], resized and padded to mask_size: the colorizer's,
        or the masks painted with ``colors`` (training draws fresh colours per sample)."""
        if colors is None:
            image = self.colorizer.colorize(masks).image
        else:
            image = paint(masks, colors).image
        x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        return resize_pad(x, self.config.mask_size, mode="nearest")[0]

    def with_image(self, colormap: torch.Tensor, image: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        """(3, S, S) colormap → itself, or with ``colormap_image`` (6, S, S): colormap + the image in
        [0, 1] resized and padded like it (``image``: uint8 (H, W, 3) or an already resized (3, S, S))."""
        if not self.config.colormap_image:
            return colormap
        if image is None:
            raise InputError("pipeline.colormap_image needs the image beside the masks")
        if isinstance(image, np.ndarray):
            image = self.small_image(image)
        return torch.cat([colormap, image.float()], dim=0)

    def small_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) → float (3, S, S) in [0, 1] at mask_size (``colormap_image``)."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return resize_pad(x, self.config.mask_size)[0]

    def visual_forward(self, pixels: torch.Tensor, mask_input: torch.Tensor) -> tuple[torch.Tensor, MaskDecoderOutput]:
        """Batched visual half: (B, 3, S, S) CLIP pixels + (B, 3|N, M, M) mask input → (Z_v, decoder output)."""
        z_v = self.vision_encoder(pixels)
        return z_v, self.decode(z_v, mask_input)

    def decode(self, z_v: torch.Tensor, mask_input: torch.Tensor, parts: Any = None) -> MaskDecoderOutput:
        """Z_v + mask input → the mask decoder's output, through the colormap encoder and fuser, or
        from Z_v and the masks alone (``queries_are_entities``); ``parts``: modules by slot (training's)."""
        enc, fuser, dec = (getattr(self, r) if parts is None else parts[r] for r in ("colormap_encoder", "fuser",
                                                                                     "mask_decoder"))
        grid = self.vision_encoder.grid_size
        return dec(z_v, grid, mask_input) if self.queries_are_entities else dec(fuser(z_v, grid, enc(mask_input)))

    # ------------------------------------------------------------------ one image
    def run(self, image: np.ndarray, masks: EntityMasks | None = None, caption: str | None = None,
            image_id: str | None = None) -> Grounding:
        """Ground ``caption`` (checked by ``check_inputs``: empty or control characters are an
        InputError), or with None the model's own description, on the entities of ``image``. An empty
        result (no entity, no noun phrase, nothing grounded) comes with a warning saying so."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"GELLA needs an RGB image (H, W, 3); got shape {image.shape}")
        if self.config.meta_device or any(p.is_meta for p in self.model.parameters()):
            raise CompatibilityError("this GELLA pipeline was built on the meta device (no weights) for "
                                     "profiling; set pipeline.meta_device=false and give checkpoints to run it")
        entities = self.segmenter.segment(image, annotation=masks, image_id=image_id)
        entities.check_image_size(image.shape[0], image.shape[1], what="segmenter output")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                pixels = self.vision_encoder.preprocess(image)[None].to(self.device)
                mask_in = self.mask_input(entities, image)[None].to(self.device)
                z_v, out = self.visual_forward(pixels, mask_in)
                lang = self.language_decoder.extract(z_v, caption)
                e_vl = lang.seg_embeddings.to(self.device, dtype=out.embeddings.dtype)
                query_entity = self.match_queries(out.masks[0], entities, out.entityness[0])
                e_vc = self.entity_embeddings(out, [torch.from_numpy(query_entity)], [self.entity_grid(entities, out)],
                                              [self.entity_shapes(entities)])
                logits = self.associator(e_vl, e_vc[0])
        finally:
            self.model.train(was_training)
        result = self.ground(lang, caption, logits, query_entity, entities)
        warn_if_empty(result, caption, image_id, self.segmenter, self.config.threshold)
        return result

    def entity_embeddings(self, out: MaskDecoderOutput, query_entity: list[torch.Tensor],
                          entity_grids: list[torch.Tensor], entity_shapes: list[torch.Tensor] | None = None) -> torch.Tensor:
        """E_vc for the associator: ``out.embeddings``, or with the mask decoder's ``entity_pooling``
        each query's embedding with the features pooled over its entity's input mask (a query mapped
        to no entity pools over its own predicted mask). ``query_entity[b]`` (q,) entity index or -1;
        ``entity_grids[b]`` (N_b, H/4, W/4) the input masks on the decoder's mask grid;
        ``entity_shapes[b]`` (N_b, S²) their ``silhouettes`` when the decoder has ``silhouette_size``."""
        if out.region_features is None or not hasattr(self.mask_decoder, "pool_regions"):
            return out.embeddings
        size = int(getattr(self.mask_decoder.config, "silhouette_size", 0))
        regions = out.masks.detach().sigmoid().clone()
        shapes = regions.new_zeros((*regions.shape[:2], size * size)) if size else None
        for b, (mapped, grid) in enumerate(zip(query_entity, entity_grids)):
            mapped = torch.as_tensor(mapped, dtype=torch.long, device=regions.device)
            keep = mapped >= 0
            if bool(keep.any()):
                regions[b, keep] = grid.to(regions)[mapped[keep]]
                if shapes is not None:
                    if entity_shapes is None:
                        raise InputError("mask_decoder.silhouette_size needs the entities' silhouettes")
                    shapes[b, keep] = entity_shapes[b].to(shapes)[mapped[keep]]
        return self.mask_decoder.pool_regions(out, regions, shapes)

    def entity_shapes(self, entities: EntityMasks) -> torch.Tensor | None:
        """The entities' ``silhouettes`` at the mask decoder's ``silhouette_size`` (None when 0)."""
        size = int(getattr(getattr(self.mask_decoder, "config", None), "silhouette_size", 0) or 0)
        return silhouettes(entities.masks, size) if size else None

    def entity_grid(self, entities: EntityMasks, out: MaskDecoderOutput) -> torch.Tensor:
        """The input masks as float (N, H/4, W/4) on the decoder's mask grid (placed like the colormap)."""
        return self._on_grid(entities, tuple(out.masks.shape[-2:]))

    def _on_grid(self, entities: EntityMasks, grid: tuple[int, ...]) -> torch.Tensor:
        return torch.from_numpy(sample_masks(entities.masks, self.config.mask_size, (grid[0], grid[1]))).float()

    def match_queries(self, query_masks: torch.Tensor, entities: EntityMasks,
                      entityness: torch.Tensor | None = None) -> np.ndarray:
        """For each query, the index of its input entity, or -1 (``query_matching``): by best IoU
        (≥ min_iou), or by the training loss's Hungarian assignment (needs ``entityness``); the
        identity for a decoder whose queries are the entities."""
        q = query_masks.shape[0]
        if len(entities) == 0:
            return np.full(q, -1, np.int64)
        if self.queries_are_entities:  # query i is entity i; -1 for padding and masks empty at mask_size
            n, size, seen = min(q, len(entities)), self.config.mask_size, np.zeros(q, bool)
            seen[:n] = sample_masks(entities.masks[:n], size, (size, size)).any((1, 2))
            return np.where(seen, np.arange(q), -1).astype(np.int64)
        ent = self._on_grid(entities, tuple(query_masks.shape[-2:]))
        if self.config.query_matching == "hungarian":
            if entityness is None:
                raise InputError("query_matching: hungarian needs the queries' entityness logits")
            # the costs of GellaTask's matching: unit weights on whole masks (no random points, so deterministic)
            costs = MatchCosts(class_weight=1.0, mask_weight=1.0, dice_weight=1.0, num_points=0)
            rows, cols = hungarian_match(entityness.cpu().float(), query_masks.cpu().float(), ent, costs=costs)
            out = np.full(q, -1, np.int64)
            out[rows.numpy()] = cols.numpy()
            return out
        pred = (query_masks.cpu() > 0).flatten(1).float()                        # sigmoid > 0.5
        ent = ent.flatten(1).float()
        inter = pred @ ent.T
        union = pred.sum(1)[:, None] + ent.sum(1)[None] - inter
        iou = inter / union.clamp_min(1)
        best, idx = iou.max(1)
        idx[best < max(self.config.min_iou, 1e-9)] = -1
        return idx.numpy().astype(np.int64)

    @staticmethod
    def entity_scores(logits: torch.Tensor, query_entity: np.ndarray, n_entities: int) -> np.ndarray:
        """v×q association logits → (v, N) phrase-to-entity scores: the highest probability among the
        queries mapped to each entity, -1 where no query maps."""
        rows = -1 if logits.numel() else logits.shape[0]  # no query at all: (v, 0)
        probs = logits.sigmoid().float().cpu().numpy().reshape(rows, len(query_entity))
        scores = np.full((probs.shape[0], n_entities), -1.0, np.float32)
        for qi, ei in enumerate(query_entity):
            if ei >= 0:
                scores[:, ei] = np.maximum(scores[:, ei], probs[:, qi])
        return scores

    def ground(self, lang: LanguageOutput, caption: str | None, logits: torch.Tensor,
               query_entity: np.ndarray, entities: EntityMasks) -> Grounding:
        """Turn v×q association logits into phrase → entity groundings (see the module docstring)."""
        scores = self.entity_scores(logits, query_entity, len(entities))
        groundings = []
        for v, phrase in enumerate(lang.phrases):
            keep = np.nonzero((scores[v] >= self.config.threshold) & (scores[v] >= 0))[0]
            keep = keep[np.argsort(-scores[v][keep], kind="stable")]
            if self.config.singular_top1 and not phrase.plural:
                keep = keep[:1]
            groundings.append(PhraseGrounding(phrase, entities.ids[keep].tolist(), scores[v][keep].tolist()))
        cap = lang.caption if lang.caption is not None else Caption(caption if caption is not None else lang.text,
                                                                    tuple(lang.phrases))
        return Grounding(cap, tuple(groundings), entities)

    # ------------------------------------------------------------------ output
    def overlay(self, result: Grounding, image: np.ndarray, only: Sequence[int] | None = None,
                legend: bool = True) -> np.ndarray:
        """The picture of a grounding (uint8 RGB): each grounded entity outlined and lightly filled in
        its phrase's colour (``phrase_colors``; an entity of several phrases takes its best-scoring
        one's) and labelled with its phrases, and a legend strip on the right naming each phrase once
        with its number of entities. ``only``: just these grounding indices; ``legend=False``: no
        strip, so the picture has the image's size (a page that shows the colours in its text)."""
        picked = range(len(result.groundings)) if only is None else list(only)
        wrong = [k for k in picked if not 0 <= k < len(result.groundings)]
        if wrong:
            raise InputError(f"phrase {wrong[0]}: this grounding has {len(result.groundings)} phrases")
        colors = phrase_colors(result)
        best: dict[int, tuple[float, int, int]] = {}  # entity → (score, grounding, rank in that grounding)
        names: dict[int, list[str]] = {}
        rows: dict[str, tuple[set[int], tuple[int, int, int]]] = {}  # phrase text → (entities, colour)
        for k in picked:
            g = result.groundings[k]
            rows.setdefault(g.phrase.text, (set(), colors[k]))[0].update(g.entity_ids)
            for rank, (eid, score) in enumerate(zip(g.entity_ids, g.scores)):
                if g.phrase.text not in names.setdefault(eid, []):
                    names[eid].append(g.phrase.text)
                if eid not in best or score > best[eid][0]:
                    best[eid] = (score, k, rank)
        order = sorted(best, key=lambda e: best[e][0])  # fill: the higher score on top
        pos = {int(i): j for j, i in enumerate(result.masks.ids)}
        masks = [result.masks.masks[pos[e]] for e in order]
        labels_first = sorted(range(len(order)), key=lambda i: best[order[i]][2])  # each phrase's best entity first
        return draw_overlay(image, masks, [colors[best[e][1]] for e in order], [" / ".join(names[e]) for e in order],
                            [(f"{text} ({len(ids)})", c) for text, (ids, c) in rows.items()] if legend else None,
                            alpha=self.config.alpha, label_order=labels_first)

    def summary(self, result: Grounding) -> str:
        """``format_table``: noun → entity ids, score ("" with no noun phrase: ``run`` has warned)."""
        return format_table(result) if result.groundings else ""

    def write(self, result: Grounding, out_dir: str, image: np.ndarray) -> list[str]:
        """``grounding.json`` (phrases, entity ids, scores, COCO-RLE masks) and ``overlay.png``
        (``overlay``: each phrase's entities in its colour, labelled, and a legend)."""
        from esgkit.core.io import save_image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = out / "grounding.json", out / "overlay.png"
        result.save(json_path)
        save_image(png_path, self.overlay(result, image))
        return [str(json_path), str(png_path)]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def save_checkpoint(self, path: str | Path) -> None:
        """All neural parts in one safetensors file (keys ``<slot>.<param>``; tied weights stored once)."""
        from safetensors.torch import save_model

        from esgkit.core.outputs import atomic_path

        with atomic_path(path) as tmp:  # a crash leaves the old file or none, never a torn one
            save_model(self.model, str(tmp))

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a checkpoint written by ``save_checkpoint`` (or a weights-only torch file; shipped
        weights are found inside the package); a missing or unexpected key is a CheckpointError
        naming it."""
        load_state(self.model, read_state_dict(path, "GELLA checkpoint"), f"GELLA checkpoint {path}")

    # ------------------------------------------------------------------ datasets
    def predict(self, dataset: Dataset, out_dir: str, *, max_images: int = 0, skip: Collection[str] = (),
                progress: bool = True) -> list[Predictions]:
        """PNG grounding, noun extraction (``nouns``) and referring expressions (``res``) on the
        dataset; see ``pipelines/gella/predict.py``."""
        return prediction.predict(self, dataset, out_dir, max_images=max_images, skip=skip, progress=progress)


__all__ = ["GellaPipeline", "NEURAL_SLOTS", "format_table", "phrase_colors", "silhouettes"]
