"""Training GELLA (paper section 4.3): the ``TrainingTask`` that ``esgkit train`` hands to the generic
``esgkit.training.Trainer``.

Losses, summed with uniform weights by default (``train.loss_weights`` changes them)::

    seg_class + seg_mask + seg_dice   L_seg: entityness BCE + mask BCE + Dice; queries Hungarian-matched
                                      to the *input* entity masks (the decoder learns to reconstruct
                                      them), every decoder layer (deep supervision); for a decoder
                                      whose queries are the entities (Table XX: ``roi_align``,
                                      ``mask_attention``) query i is entity i, padding takes no loss
    asso                              L_asso: BCE of the associator's v×q logits against G_A, where
                                      G_A[i, j] = 1 when query j's matched entity is one of phrase i's
                                      segments (one-to-many for plurals); final layer's matching
    ans                               L_ans: token cross-entropy on the answer, <SEG> tokens included
    tag                               (noun_extraction: tag only) BIO cross-entropy of the span tagger
                                      on the caption tokens of the nouns / grounding / res prompts

Every sample draws one subtask (``train.subtasks``; paper: description 0.2 / nouns 0.2 / grounding
0.6; ``res`` — the referring-expression prompt answered with the expression and one ``<SEG>`` — is
an optional fourth). Every subtask trains L_ans; all but ``description`` train L_seg (the paper:
description trains the language loss only; ``train.description_seg: true`` adds L_seg);
``grounding`` and ``res`` also train L_asso with E_vl taken at the teacher-forced ``<SEG>`` positions.

Mask source (``train.mask_source``, the paper's Table XVIII(a)): the entity masks GELLA sees are the
annotated segments (``ground_truth``), or the masks of the segmenter of another config (e.g.
``cropformer_tiny``; computed once per image through ``pipelines/segment_cache.py``), on a share
``train.mask_source_ratio`` of the samples (drawn per sample and step; the rest see ground truth).
Predicted entities get their targets from the annotation (``layers/overlap.assign_to_segments``): a
predicted entity belongs to the annotated segment holding the largest part of its area when that part
is ≥ ``train.match_min_share`` of it, and is a positive of every phrase (or expression) linked to
that segment; an entity mostly on no segment, or spread over several, is a negative of all. L_seg
reconstructs the masks GELLA was given, predicted or annotated. ``train.mask_augment`` perturbs the
ground-truth masks of a share of the other samples the way a segmenter errs (merged, split, jittered,
dropped entities: ``training/mask_augment.py``, rates ``train.augment_*``), targets by the same rule.
With a mask input of masks (``binary_mask_pool``, or the Table XX decoders) ``collate`` pads every
image's masks with all-zero ones to the batch's largest number of entities; padded entities have no
target (no L_seg, no L_asso). The subtask, the mask source, the perturbations and the colormap colours
are drawn in ``collate`` from torch's RNG, which the trainer checkpoints, so ``--resume`` is exact.

The ``train:`` section of a GELLA YAML holds both the generic ``TrainConfig`` keys (lr, steps,
batch_size, freeze, …) and the task's own keys (``GellaTrainConfig``); ``esgkit train`` separates
them (``esgkit.training.config.split_train_section``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from esgkit.core import EntityMasks
from esgkit.core.errors import CompatibilityError, ConfigError
from esgkit.layers.geometry import sample_masks
from esgkit.layers.overlap import assign_to_segments

from ..data import PreparedSplit
from ..mask_augment import MaskNoise, perturb_masks
from ..trainer import TrainingTask

SUBTASKS = ("description", "nouns", "grounding", "res")


@dataclass
class GellaTrainConfig:
    """GELLA-specific training settings (keys of the ``train:`` section besides ``TrainConfig``'s)."""

    subtasks: dict[str, float] = field(default_factory=lambda: {"description": 0.2, "nouns": 0.2, "grounding": 0.6})
    split: str = "train"            # the ShapesWorld split under --data
    max_images: int = 0             # 0 = the whole split
    mask_points: int = 0            # points sampled per mask for the mask losses; 0 = every stride-4 cell
    no_object_weight: float = 0.1   # entityness weight of unmatched queries (Mask2Former)
    asso_pos_weight: float = 1.0    # BCE weight of the positive noun↔entity pairs
    val_split: str = ""             # evaluate on this split during training ("" = no evaluation)
    val_images: int = 16            # images of val_split used by those evaluations
    description_seg: bool = False   # the description subtask also trains L_seg (the paper: language loss only)
    mask_source: str = "ground_truth"  # or a config (name or YAML) whose segmenter makes the entity masks
    mask_source_ratio: float = 1.0  # share of samples that see mask_source's masks (the rest: ground truth)
    match_min_share: float = 0.5    # a predicted entity takes the segment holding ≥ this share of its area
    mask_cache: str = ""            # where mask_source's masks are cached ("" = the default cache folder)
    mask_augment: float = 0.0       # share of ground-truth samples whose masks are perturbed (training/mask_augment.py)
    augment_merge: float = MaskNoise.merge    # per entity < 10 % of the image: joined with a touching neighbour
    augment_split: float = MaskNoise.split    # per entity < 10 % of the image: cut in two by a random line
    augment_jitter: float = MaskNoise.jitter  # per entity: border grown or shrunk by 1..2 px (of the kept masks)
    augment_drop: float = MaskNoise.drop      # per entity < 2 % of the image: missing


def check_subtasks(settings: GellaTrainConfig) -> None:
    """ConfigError for an unknown subtask or no positive ratio (key ``train.subtasks``), or a share
    outside [0, 1]."""
    unknown = sorted(set(settings.subtasks) - set(SUBTASKS))
    if unknown:
        raise ConfigError(f"unknown subtask {unknown[0]!r}; choose from {', '.join(SUBTASKS)}", key="train.subtasks")
    if sum(max(0.0, float(v)) for v in settings.subtasks.values()) <= 0:
        raise ConfigError("at least one subtask needs a positive ratio", key="train.subtasks")
    for key in ("mask_source_ratio", "match_min_share", "mask_augment", "augment_merge", "augment_split",
                "augment_jitter", "augment_drop"):
        if not 0.0 <= float(getattr(settings, key)) <= 1.0:
            raise ConfigError(f"must be within [0, 1]; got {getattr(settings, key)}", key=f"train.{key}")


def mask_source_segmenter(settings: GellaTrainConfig) -> Any:
    """The cached segmenter of ``train.mask_source``'s config, or None for ``ground_truth``."""
    if settings.mask_source in ("", "ground_truth"):
        return None
    from esgkit.core import get_registry, load_config
    from esgkit.core.schema import to_container
    from esgkit.pipelines.segment_cache import cached_segmenter

    section = to_container(load_config(settings.mask_source)).get("segmenter")
    if not section:
        raise ConfigError(f"config {settings.mask_source!r} has no segmenter section to make masks with",
                          key="train.mask_source")
    name = section if isinstance(section, str) else section.get("name")
    if name == "ground_truth":
        raise ConfigError(f"config {settings.mask_source!r}'s segmenter is ground_truth; for the annotated masks "
                          "write mask_source: ground_truth", key="train.mask_source")
    segmenter = get_registry().build("segmenter", section, key="train.mask_source: segmenter")
    return cached_segmenter(segmenter, settings.mask_cache or None)  # from_files etc. are read as they are


def open_split(data_dir: str | Path, split: str) -> Any:
    """The ShapesWorld split under ``data_dir``, its files checked (the error says how to make them)."""
    from esgkit.datasets.shapesworld import ShapesWorldDataset

    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(data_dir), split=split))
    dataset.check_files()
    return dataset


class GellaSamples(PreparedSplit):
    """ShapesWorld samples prepared for GELLA: CLIP pixels, entity masks, stride-4 targets, phrases
    with their entity indices, the description and the referring expressions. Prepared once per
    image and kept in memory (the split is small; resizing is the costly part)."""

    def __init__(self, pipeline: Any, data_dir: str | Path, split: str, max_images: int = 0,
                 segmenter: Any = None, min_share: float = 0.5) -> None:
        self.pipeline, self.segmenter, self.min_share = pipeline, segmenter, min_share
        super().__init__(open_split(data_dir, split), max_images)

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        predicted = None
        if self.segmenter is not None:
            predicted = self.segmenter.segment(sample["image"], annotation=sample["masks"],
                                               image_id=str(sample["image_id"]))
        return prepare_sample(self.pipeline, sample, predicted, self.min_share)


def target_grid(pipeline: Any) -> tuple[int, int]:
    """Side of the mask decoder's stride-4 output for the pipeline's mask_size."""
    side = pipeline.config.mask_size // 4
    return side, side


def prepare_sample(pipeline: Any, sample: dict[str, Any], predicted: Any = None, min_share: float = 0.5) -> dict[str, Any]:
    """One ShapesWorld sample → what ``GellaTask.collate`` needs (no randomness here): the image
    inputs, the caption, and one entity *view* per mask source — ``gt`` (the annotated segments) and,
    given ``predicted`` masks, ``pred`` (those masks, targets by ``assign_to_segments``)."""
    gt, caption = sample["masks"], sample["caption"]
    segment_of = gt.ids.astype(np.int64)  # entity k of the ground truth is segment gt.ids[k]
    links = {"phrase_segments": [list(segs) for segs in sample["phrase_segments"]],
             "refs": [(r["sent"], int(r["segment_id"])) for r in sample.get("refs", [])]}
    views = {"gt": entity_view(pipeline, links, gt, segment_of)}
    if predicted is not None:
        views["pred"] = entity_view(pipeline, links, predicted, segments_of(predicted.masks, gt.masks, segment_of, min_share))
    return {
        "image_id": sample["image_id"],
        "pixels": pipeline.vision_encoder.preprocess(sample["image"]).to(torch.float16),
        "small_image": pipeline.small_image(sample["image"]).to(torch.float16) if pipeline.config.colormap_image else None,
        "caption": caption.text,
        "phrases": [p.text for p in caption.phrases],
        "description": sample.get("description", ""),
        "links": links,
        **views,
    }


def segments_of(masks: np.ndarray, segments: np.ndarray, segment_ids: np.ndarray, min_share: float) -> np.ndarray:
    """The annotated segment id each of ``masks`` stands for (-1: none), by ``assign_to_segments``."""
    assigned = assign_to_segments(masks, segments, min_share)
    return np.where(assigned >= 0, segment_ids[np.maximum(assigned, 0)], -1)


def entity_view(pipeline: Any, links: dict[str, Any], masks: Any, segment_of: np.ndarray) -> dict[str, Any]:
    """The masks GELLA is given and their targets: ``segment_of[k]`` is the annotated segment id
    entity k stands for (-1: none); ``links`` the segments of each phrase and each referring
    expression. Kept masks are subsampled to ≤ 2 × mask_size per side (the colormap is drawn at
    mask_size), so 2048² training images fit in memory."""
    phrase_entities = [np.nonzero(np.isin(segment_of, segs))[0].tolist() for segs in links["phrase_segments"]]
    refs = [(sent, np.nonzero(segment_of == seg)[0].tolist()) for sent, seg in links["refs"]]
    step = max(1, max(masks.image_size) // (2 * pipeline.config.mask_size))
    kept = masks if step == 1 else EntityMasks(np.ascontiguousarray(masks.masks[:, ::step, ::step]), masks.scores,
                                               masks.ids)  # a copy: a view would keep the full-size array alive
    return {
        "masks": kept,
        "targets": torch.from_numpy(sample_masks(masks.masks, pipeline.config.mask_size, target_grid(pipeline))),
        "silhouettes": pipeline.entity_shapes(masks),
        "phrase_entities": phrase_entities,
        "refs": [(sent, ents) for sent, ents in refs if ents],
        "segment_of": segment_of,
    }


def colormap_input(pipeline: Any, masks: Any, seed: int, image: Tensor | None = None) -> Tensor:
    """The colormap encoder's input with colours drawn from ``seed`` (random distinct colours per
    sample and epoch, as in the paper), or the pipeline's own input for other colorizers;
    ``image`` (3, S, S) is appended with ``pipeline.colormap_image``."""
    colorizer = pipeline.colorizer
    if pipeline.mask_input_kind != "colormap":
        return pipeline.mask_input(masks)
    colors = colorizer.colors(len(masks), seed=seed) if hasattr(colorizer, "colors") else None
    return pipeline.with_image(pipeline.colormap(masks, colors), image)


def stack_padded(inputs: list[Tensor]) -> Tensor:
    """The samples' mask inputs as one batch: stacked, and for ``input_kind == "masks"`` (N_b, S, S)
    with different N_b first padded with all-zero masks to the largest N (a padded mask is no entity)."""
    most = max(x.shape[0] for x in inputs)
    return torch.stack([torch.cat([x, x.new_zeros(most - x.shape[0], *x.shape[1:])]) if x.shape[0] < most else x
                        for x in inputs])


def entity_matches(mask_input: Tensor, targets: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Queries that are their input entities: image b's query i ↔ entity i for every entity whose
    mask input is not empty (a padded mask or one too small for mask_size is matched to nothing)."""
    out = []
    for b, target in enumerate(targets):
        seen = torch.nonzero(mask_input[b, : len(target)].flatten(1).any(1).cpu())[:, 0]
        out.append((seen, seen.clone()))
    return out


class GellaTask(TrainingTask):
    """GELLA's losses (L_seg + L_asso + L_ans) on a ShapesWorld split, subtasks sampled per sample."""

    Config = GellaTrainConfig
    weights_name = "gella"
    loss_keys = ("loss", "ans", "asso", "seg_class", "seg_mask", "seg_dice", "tag")
    log_scale = True

    def __init__(self, pipeline_config: Mapping[str, Any], data_dir: str | Path,
                 settings: GellaTrainConfig | None = None) -> None:
        self.config = {k: v for k, v in pipeline_config.items() if k not in ("train", "eval")}
        # Training starts from the components' own initialisation, never from the weights a config
        # ships for inference (e.g. gella_tiny_trained's pipeline.checkpoint).
        if isinstance(self.config.get("pipeline"), dict) and self.config["pipeline"].get("checkpoint"):
            self.config["pipeline"] = {**self.config["pipeline"], "checkpoint": ""}
        self.data_dir = Path(data_dir)
        self.settings = settings or GellaTrainConfig()
        check_subtasks(self.settings)
        open_split(self.data_dir, self.settings.split)
        names = list(self.settings.subtasks)
        self.subtask_names = names
        self.subtask_probs = torch.tensor([max(0.0, float(self.settings.subtasks[k])) for k in names], dtype=torch.float64)
        self.pipeline: Any = None
        self._val: Any = None
        self.mask_segmenter = mask_source_segmenter(self.settings)
        self.mask_noise = MaskNoise(merge=self.settings.augment_merge, split=self.settings.augment_split,
                                    jitter=self.settings.augment_jitter, drop=self.settings.augment_drop)

    # ------------------------------------------------------------------ TrainingTask
    def build_model(self) -> nn.Module:
        from esgkit.core import build_pipeline

        pipeline = build_pipeline(dict(self.config), trains=True)  # no warning for the weights it is about to train
        if not hasattr(pipeline, "visual_forward"):
            raise CompatibilityError(f"{type(pipeline).__name__} is not a GELLA pipeline; esgkit train supports pipeline: gella")
        lang = pipeline.language_decoder
        if not all(hasattr(lang, a) for a in ("build_inputs", "collate", "forward")):
            raise CompatibilityError(f"language_decoder ({type(lang).__name__}) has no training interface "
                                     "(build_inputs, collate, forward); use llava_llama")
        self.pipeline = pipeline
        return pipeline.model

    def train_dataset(self) -> Sequence[Any]:
        return GellaSamples(self._built(), self.data_dir, self.settings.split, self.settings.max_images,
                            self.mask_segmenter, self.settings.match_min_share)

    def config_dict(self) -> dict[str, Any]:
        return {"pipeline_config": self.config, "gella_train": dataclasses.asdict(self.settings),
                "data": str(self.data_dir)}

    def _built(self) -> Any:
        if self.pipeline is None:
            self.build_model()
        return self.pipeline

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        pipeline = self._built()
        lang = pipeline.language_decoder
        tokens = int(np.prod(pipeline.vision_encoder.grid_size))
        picks = torch.multinomial(self.subtask_probs, len(samples), replacement=True).tolist()
        seeds = torch.randint(0, 2**31 - 1, (len(samples),)).tolist()
        use_pred = (torch.rand(len(samples)) < self.settings.mask_source_ratio).tolist()
        noisy = ((torch.rand(len(samples)) < self.settings.mask_augment).tolist() if self.settings.mask_augment > 0
                 else [False] * len(samples))  # no draw when off: recipes without it keep their random stream
        views = [s["pred"] if pred and "pred" in s else self._augmented(s, seed) if noise else s["gt"]
                 for s, pred, noise, seed in zip(samples, use_pred, noisy, seeds)]
        inputs, tasks, entities = [], [], []
        for s, view, pick in zip(samples, views, picks):
            task = self.subtask_names[pick]
            if task == "res" and not view["refs"] or task in ("nouns", "grounding") and not s["phrases"]:
                task = "description"
            if task == "description":
                inputs.append(lang.build_inputs("description", s["description"] or s["caption"], (), tokens))
                entities.append([])
            elif task == "res":
                sent, ents = view["refs"][int(torch.randint(len(view["refs"]), ()).item())]
                inputs.append(lang.build_inputs("res", sent, [sent], tokens))
                entities.append([ents])
            else:
                inputs.append(lang.build_inputs("nouns" if task == "nouns" else "grounding", s["caption"], s["phrases"], tokens))
                entities.append(view["phrase_entities"] if task == "grounding" else [])
            tasks.append(task)
        return {
            "pixels": torch.stack([s["pixels"].float() for s in samples]),
            "mask_input": stack_padded([colormap_input(pipeline, v["masks"], seed, s.get("small_image"))
                                        for s, v, seed in zip(samples, views, seeds)]),
            "targets": [v["targets"].float() for v in views],
            "silhouettes": [v.get("silhouettes") for v in views],
            "lang": lang.collate(inputs),
            "tasks": tasks,
            "phrase_entities": entities,
        }

    def _augmented(self, sample: dict[str, Any], seed: int) -> dict[str, Any]:
        """The sample's ground-truth view with its masks perturbed (``train.mask_augment``), targets
        by the predicted-mask rule; ``seed`` comes from torch's checkpointed RNG."""
        gt = sample["gt"]
        masks = perturb_masks(gt["masks"].masks, np.random.default_rng([seed, 1]), self.mask_noise)
        segment_of = segments_of(masks, gt["masks"].masks, gt["segment_of"], self.settings.match_min_share)
        return entity_view(self._built(), sample["links"], EntityMasks(masks), segment_of)

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        from ..criterion import GivenMatchCriterion, SetCriterion, SetCriterionConfig
        from ..losses import association_loss

        pipeline = self._built()
        z_v = model["vision_encoder"](batch["pixels"])
        out = pipeline.decode(z_v, batch["mask_input"], model)
        targets = batch["targets"]
        settings = self.settings
        costs = SetCriterionConfig(class_weight=1.0, mask_weight=1.0, dice_weight=1.0,
                                   no_object_weight=settings.no_object_weight, num_points=settings.mask_points)
        # queries that are the entities (Table XX decoders): query i ↔ entity i instead of Hungarian matching
        pairs = entity_matches(batch["mask_input"], targets) if pipeline.queries_are_entities else None

        def criterion_of(images: Sequence[int]) -> SetCriterion:
            if pairs is None:
                return SetCriterion(costs)
            return GivenMatchCriterion(costs, [pairs[b] for b in images], [len(targets[b]) for b in images])

        # L_seg on the samples whose subtask trains it (description: only with train.description_seg)
        keep = [b for b, t in enumerate(batch["tasks"]) if t != "description" or self.settings.description_seg]
        if keep:
            seg_rows = torch.tensor(keep)
            seg = criterion_of(keep)(out.entityness[seg_rows], out.masks[seg_rows], [targets[b] for b in keep],
                                     aux=[(a["entityness"][seg_rows], a["masks"][seg_rows]) for a in out.aux])
        else:  # no sample trains L_seg: zero losses that keep the decoder in the graph (DDP)
            zero = out.entityness.sum() * 0.0 + out.masks.sum() * 0.0
            seg = {"class": zero, "mask": zero, "dice": zero}
        lang = model["language_decoder"](z_v, **batch["lang"])
        terms = {"seg_class": seg["class"], "seg_mask": seg["mask"], "seg_dice": seg["dice"], "ans": lang.loss}
        if lang.tag_loss is not None:  # language_decoder.noun_extraction: tag
            terms["tag"] = lang.tag_loss

        rows, goals = [], []
        if any(batch["phrase_entities"]):
            with torch.no_grad():
                matches = criterion_of(range(len(targets))).match(out.entityness, out.masks, targets)
            entity_of_query = []
            for q_idx, t_idx in matches:
                mapped = torch.full((out.masks.shape[1],), -1, dtype=torch.long)
                mapped[q_idx] = t_idx
                entity_of_query.append(mapped)
            e_vc = pipeline.entity_embeddings(out, entity_of_query, targets,  # out.embeddings unless pooling
                                              batch.get("silhouettes"))
        for b, phrase_entities in enumerate(batch["phrase_entities"]):
            if not phrase_entities:
                continue
            e_vl = lang.seg_embeddings[b]
            if e_vl.shape[0] != len(phrase_entities):
                raise CompatibilityError(f"the answer holds {e_vl.shape[0]} <SEG> tokens for {len(phrase_entities)} "
                                         "phrases; the tokenizer must encode <SEG> as one id")
            real = len(targets[b]) if pipeline.queries_are_entities else e_vc.shape[1]  # padding: no L_asso
            logits = model["associator"](e_vl, e_vc[b][:real])
            goal = torch.zeros_like(logits)
            for v, ents in enumerate(phrase_entities):
                if ents:
                    goal[v] = torch.isin(entity_of_query[b][:real], torch.tensor(ents, dtype=torch.long)).to(goal)
            rows.append(logits.flatten())  # images may differ in their number of queries (entity queries)
            goals.append(goal.flatten())
        if rows:
            pos = self.settings.asso_pos_weight
            terms["asso"] = association_loss(torch.cat(rows), torch.cat(goals), None if pos == 1.0 else pos)
        else:  # keeps the associator (and the decoder's pooling layer) in the graph (DDP), contributing nothing
            idle = [*model["associator"].parameters(), *getattr(model["mask_decoder"], "pooled", nn.Identity()).parameters()]
            terms["asso"] = sum(p.sum() for p in idle) * 0.0
        return terms

    def evaluate(self, model: nn.Module, step: int) -> Mapping[str, float] | None:
        if not self.settings.val_split:
            return None
        from esgkit.evaluation.run import evaluate

        if self._val is None:
            self._val = open_split(self.data_dir, self.settings.val_split)
        metrics = evaluate(self._built(), self._val, max_images=self.settings.val_images, skip=("res",), progress=False)
        return {k: v for k, v in metrics.items() if k in ("AR", "AR_th", "AR_st", "noun_recall")}


__all__ = ["SUBTASKS", "GellaSamples", "GellaTask", "GellaTrainConfig", "check_subtasks", "open_split", "prepare_sample"]
