"""The abstract interface of every component kind (the registry's namespaces).

A component is a class with a nested ``Config`` dataclass (its typed config) that is built as
``cls.from_config(config)`` (by default ``cls(config)``). Neural components also subclass
``torch.nn.Module`` (``class X(nn.Module, ColormapEncoder)``); this module never imports torch, so
``esgkit list`` stays fast. Shapes below use B batch, N entities, q queries, v noun phrases.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import CompatibilityError, InputError
from .text import check_caption, check_expression

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .types import Caption, Colormap, EntityMasks, NounPhrase


@dataclass
class NoConfig:
    """The config of a component that takes no options."""


class Component(ABC):
    """Base of all components: a kind, a typed ``Config`` and a way to build from it."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig

    @classmethod
    def from_config(cls, config: Any) -> Component:
        """Build from a validated ``Config`` instance. Override to e.g. load a checkpoint."""
        return cls(config)  # type: ignore[call-arg]

    @classmethod
    def default_config(cls) -> Any:
        return cls.Config()


# --------------------------------------------------------------------------- image → entities


class Segmenter(Component):
    """RGB image → class-agnostic ``EntityMasks``.

    ``image`` is uint8 (H, W, 3). The result's masks are (N, H, W) at the image's own size.
    ``annotation`` carries masks known in advance (a dataset's ground truth, or ``--masks FILE``);
    segmenters that compute masks themselves ignore it. ``image_id`` names the image, for
    segmenters that look masks up by name (``from_files``). ``cacheable``: whether the output is worth
    keeping on disk for the next run (``pipelines/segment_cache.py``); False for segmenters that only
    read masks made elsewhere.
    """

    kind = "segmenter"
    cacheable: ClassVar[bool] = True

    @abstractmethod
    def segment(
        self, image: np.ndarray, annotation: EntityMasks | None = None, image_id: str | None = None
    ) -> EntityMasks: ...


class Colorizer(Component):
    """``EntityMasks`` → ``Colormap``: one colour per entity, black background.

    Entities are painted in ascending score order, so where masks overlap the higher score shows.
    """

    kind = "colorizer"

    @abstractmethod
    def colorize(self, masks: EntityMasks) -> Colormap: ...


# --------------------------------------------------------------------------- neural parts (torch)


class ColormapEncoder(Component):
    """Colormap → feature pyramid. nn.Module.

    forward(colormap: float (B, 3, H, W) in [0, 1]) → list of 4 tensors (B, C_s, H/s, W/s) for
    strides s = 4, 8, 16, 32 (always NCHW). ``out_channels`` gives C_s per level.
    """

    kind = "colormap_encoder"
    strides: ClassVar[tuple[int, ...]] = (4, 8, 16, 32)

    @property
    @abstractmethod
    def out_channels(self) -> tuple[int, ...]: ...


class VisionEncoder(Component):
    """RGB image → low-resolution grid tokens Z_v. nn.Module.

    ``preprocess(image uint8 (H, W, 3))`` → float (3, S, S): aspect-preserving resize so both sides
    ≤ S, zero padding to a square, normalisation. forward(float (B, 3, S, S)) → Z_v (B, h·w, C) with
    ``grid_size`` = (h, w) and ``embed_dim`` = C.
    """

    kind = "vision_encoder"

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]: ...

    @property
    @abstractmethod
    def image_size(self) -> int: ...

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> torch.Tensor: ...


class Fuser(Component):
    """(Z_v, Z_c pyramid) → Z_vc pyramid of the same shapes as Z_c. nn.Module.

    forward(z_v: (B, h·w, C_v), grid: (h, w), pyramid: list[(B, C_s, H_s, W_s)]) → list like pyramid.
    ``configure(vision_dim, pyramid_channels)`` is called once at pipeline build time, before the
    fuser's weights are created, so the fuser can size its projections.
    """

    kind = "fuser"

    @abstractmethod
    def configure(self, vision_dim: int, pyramid_channels: tuple[int, ...]) -> None: ...


@dataclass
class MaskDecoderOutput:
    """embeddings E_vc (B, q, D); entityness logits (B, q, 2) [entity, no-entity]; mask logits
    (B, q, H/4, W/4); ``aux`` the same three for each intermediate decoder layer (deep supervision);
    ``region_features`` (B, C, H/4, W/4), or None: features a decoder offers for pooling over given
    regions (the ``mask2former`` decoder's ``entity_pooling``)."""

    embeddings: torch.Tensor
    entityness: torch.Tensor
    masks: torch.Tensor
    aux: list[dict[str, torch.Tensor]] = dataclasses.field(default_factory=list)
    region_features: torch.Tensor | None = None


class MaskDecoder(Component):
    """Fused pyramid → entity queries. nn.Module; forward(pyramid) → ``MaskDecoderOutput``.

    ``configure(pyramid_channels)`` is called at build time, before weights are created.
    """

    kind = "mask_decoder"

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @abstractmethod
    def configure(self, pyramid_channels: tuple[int, ...]) -> None: ...


@dataclass
class LanguageOutput:
    """What the language decoder says about one image: the generated text, the noun phrases it
    named (with spans in the caption when one was given), and E_vl (v, D) — the last hidden state
    at each ``<SEG>`` token, aligned with ``phrases``."""

    text: str
    phrases: tuple[NounPhrase, ...]
    seg_embeddings: torch.Tensor
    caption: Caption | None = None


class LanguageDecoder(Component):
    """(visual tokens, prompt + caption) → text with ``<SEG>`` after every noun, and E_vl. nn.Module.

    ``configure(vision_dim)`` is called at build time (sizes the projection W of Z_v).
    ``extract(z_v (1, L, C), caption)`` runs the noun-extraction prompt (or, with ``caption=None``,
    the image-description subtask first) and returns a ``LanguageOutput``.
    """

    kind = "language_decoder"

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @abstractmethod
    def configure(self, vision_dim: int) -> None: ...

    @abstractmethod
    def extract(self, z_v: torch.Tensor, caption: str | None) -> LanguageOutput: ...


class Associator(Component):
    """(E_vl (v, D_l), E_vc (q, D_c)) → association logits (v, q). nn.Module.

    ``configure(lang_dim, entity_dim)`` is called at build time, before weights are created.
    """

    kind = "associator"

    @abstractmethod
    def configure(self, lang_dim: int, entity_dim: int) -> None: ...


# --------------------------------------------------------------------------- referring (REC / RES)


@dataclass
class TextFeatures:
    """Encoded expressions: ``tokens`` (B, T, D) token features, ``mask`` (B, T) bool (True = a real
    token, False = padding), ``sentence`` (B, D) one vector per expression (e.g. [CLS] or mean)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor


class TextEncoder(Component):
    """Expressions → ``TextFeatures``. nn.Module; ``encode(texts)`` tokenizes and runs on the module's
    device. ``embed_dim`` = D; an encoder's ``max_tokens`` option caps T (longer expressions are cut)."""

    kind = "text_encoder"

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @property
    def pretrained(self) -> bool:
        """Whether the encoder comes with trained weights of its own (a referring checkpoint trained
        with it frozen may then leave it out)."""
        return False

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> TextFeatures: ...


@dataclass
class Referral:
    """What a referrer says one expression refers to: ``box`` [x, y, w, h] in image pixels, ``mask``
    bool (H, W) at the image's size (None for a box-only referrer), ``score`` its confidence and,
    for a referrer that picks among entity proposals, the ids of the entities it picked for the box
    and for the mask (None otherwise)."""

    box: tuple[float, float, float, float]
    mask: np.ndarray | None
    score: float
    box_entity: int | None = None
    mask_entity: int | None = None

    def mask_or_empty(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask, or an empty one of ``shape`` (h, w) from a box-only referrer: what is written and scored."""
        return self.mask if self.mask is not None else np.zeros(shape, bool)


class Referrer(Component):
    """(image, encoded expressions [, entity proposals]) → one ``Referral`` per expression. nn.Module.

    ``configure(text_dim)`` is called at build time, before weights are created (sizes the text
    projection). ``refer(image uint8 (H, W, 3), text (B expressions), proposals)`` computes the image's
    features once for all B expressions. ``needs_proposals``: the referrer ranks the entities of a
    segmenter (two-stage, e.g. PBREC-MT) and refuses ``proposals=None``."""

    kind = "referrer"
    needs_proposals: ClassVar[bool] = False

    @abstractmethod
    def configure(self, text_dim: int) -> None: ...

    @abstractmethod
    def refer(self, image: np.ndarray, text: TextFeatures, proposals: EntityMasks | None = None) -> list[Referral]: ...


# --------------------------------------------------------------------------- data, metrics, grids


class Dataset(Component):
    """A readable dataset: ``len()`` samples, ``dataset[i]`` → a dict with at least ``image_id``
    and ``image`` (uint8 H×W×3); readers add what their format holds (``masks``: EntityMasks,
    ``caption``: Caption with linked segments, ``refs`` …). Built with ``root`` in its Config."""

    kind = "dataset"

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def take(self, max_images: int = 0, progress: str = "") -> Iterable[int]:
        """The indices of the first ``max_images`` samples (all when ≤ 0), behind a progress bar
        labelled ``progress`` when it is given."""
        n = min(len(self), max_images) if max_images > 0 else len(self)
        if not progress:
            return range(n)
        from tqdm.auto import tqdm

        return tqdm(range(n), desc=progress, unit="img")

    def ground_truth(self, evaluator: str, image_ids: Sequence[str], folder: str) -> tuple[str, dict[str, Any]]:
        """The ground truth that the ``evaluator`` (a registry name: ``png``, ``res``, ``entity`` …)
        scores predictions on ``image_ids`` against: a file path (written into ``folder`` when the
        file must be cut down to those images) and the evaluator options it needs. Raises
        InputError when this dataset has no such annotation."""
        raise InputError(f"dataset {type(self).__name__} has no ground truth for the {evaluator!r} evaluator")


class Evaluator(Component):
    """Scores predictions against ground truth files: ``score(gt, pred)`` → {metric: value}.
    ``gt`` and ``pred`` are paths to files in the documented formats (see docs/formats.md)."""

    kind = "evaluator"

    @abstractmethod
    def score(self, gt: str, pred: str) -> dict[str, float]: ...


@dataclass
class Predictions:
    """A prediction file written by ``Pipeline.predict`` for a registered evaluator to score.

    ``evaluator``: its registry name; ``gt`` / ``pred``: the files it scores; ``options``: its config
    options; ``keys``: which of its metrics to report, under which name (``{"AR": "AR_generated"}``;
    None = all, as they are); ``name``: what ``predict(skip=…)`` calls this part."""

    evaluator: str
    gt: str
    pred: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    keys: dict[str, str] | None = None
    name: str = ""


class Task(Component):
    """A training task: what ``esgkit train`` runs for a pipeline config.

    ``Config`` holds the task's own keys of the config's ``train:`` section (the trainer's generic
    keys — lr, steps, batch size … — are ``esgkit.training.TrainConfig``). ``esgkit train`` builds a
    task as ``cls(pipeline_config, data_dir, settings)`` and hands it to the trainer; the training
    methods (model, dataset, losses) are those of ``esgkit.training.TrainingTask``. ``weights_name``
    names the run's final weights, ``RUN/<weights_name>.safetensors``; ``loss_keys`` the terms plotted.
    """

    kind = "task"
    weights_name: ClassVar[str] = "model"
    loss_keys: ClassVar[tuple[str, ...]] = ("loss",)

    @classmethod
    def from_config(cls, config: Any) -> Component:
        raise CompatibilityError(f"task {cls.__name__} trains a pipeline config on a data folder; "
                                 "build it as cls(pipeline_config, data_dir, settings) (what `esgkit train` does)")


class Executor(Component):
    """Runs independent jobs (grid cells): ``map(fn, items)`` yields (item, result or exception)."""

    kind = "executor"

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]: ...


class Pipeline(Component):
    """An assembled pipeline. ``slots`` maps each config section (role) to the component kind it
    holds; the registry builds every slot, then ``from_components`` wires them and ``check`` verifies
    at build time that connected parts agree. ``run`` processes one image.

    Every subclass's ``run`` is wrapped so that ``check_inputs`` sees its inputs first: an input the
    pipeline does not use (a caption given to a pipeline without a language part) is an InputError,
    never silently ignored, and a caption is checked (``esgkit.core.text.check_caption``)."""

    kind = "pipeline"
    slots: ClassVar[Mapping[str, str]] = {}
    weights_key: ClassVar[str] = ""
    """The config key naming the pipeline's trained weights (``esgkit eval --checkpoint`` replaces it).
    Empty in a config that is built (outside ``meta_device``): a warning says the results are meaningless."""
    trained_configs: ClassVar[tuple[str, ...]] = ()
    """Shipped configs of this pipeline that name trained weights: what that warning suggests."""
    inputs: ClassVar[frozenset[str]] = frozenset({"masks", "image_id"})
    """The keyword inputs ``run`` uses beside the image: ``masks`` (entity masks known in advance),
    ``image_id`` and, for pipelines with a language part, ``caption`` (grounding) or ``expression``
    (referring). Any other input given (not None) is refused by ``check_inputs``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if callable(run) and not getattr(run, "__isabstractmethod__", False) and not hasattr(run, "_checks_inputs"):
            cls.run = _checked_run(run)  # type: ignore[method-assign]

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """``inputs`` (the keyword inputs of ``run``), checked: an input this pipeline does not use
        is an InputError naming it (or, when None, dropped); a caption comes back normalised
        (``check_caption``)."""
        name = type(self).__name__.removesuffix("Pipeline").lower() or type(self).__name__
        checked = {key: value for key, value in inputs.items() if key in self.inputs or value is not None}
        for key, value in inputs.items():
            if value is None or key in self.inputs:
                continue
            if key == "caption":
                instead = "give the referring --expression instead" if "expression" in self.inputs else \
                    "drop --caption or use a grounding config such as esg_tiny"
                raise InputError(f"pipeline {name} takes no caption (it has no language decoder); {instead}")
            known = ", ".join(["image", *sorted(self.inputs)])
            raise InputError(f"pipeline {name} takes no input {key!r} (its inputs: {known})")
        if checked.get("caption") is not None:
            checked["caption"] = check_caption(checked["caption"])
        if checked.get("expression") is not None:
            checked["expression"] = check_expression(checked["expression"])
        return checked

    @classmethod
    def from_components(cls, config: Any, components: Mapping[str, Component]) -> Pipeline:
        return cls(config, **components)  # type: ignore[call-arg]

    def check(self) -> None:
        """Raise CompatibilityError when connected components disagree. Default: nothing to check."""

    @abstractmethod
    def run(self, image: np.ndarray, **inputs: Any) -> Any: ...

    def write(self, result: Any, out_dir: str, image: np.ndarray) -> list[str]:
        """Write a result to ``out_dir`` (already claimed by ``esgkit run``, see ``esgkit.core.outputs``);
        return the written paths. Write each file atomically (``esgkit.core.io.save_image`` /
        ``save_masks``, ``esgkit.core.outputs.atomic_write``) so a crash never leaves a torn one."""
        raise NotImplementedError(f"{type(self).__name__} does not write results")

    def summary(self, result: Any) -> str:
        """What ``esgkit run`` prints about a result before the files it wrote: a few lines for a person
        (a table of what was found), or "" to print nothing, the default. An empty result is ``run``'s
        to warn about (``warnings.warn``, shown as ``esgkit: warning: …``): a summary does not repeat it."""
        return ""

    def predict(self, dataset: Dataset, out_dir: str, *, max_images: int = 0, skip: Collection[str] = (),
                progress: bool = True) -> list[Predictions]:
        """Run on the first ``max_images`` samples of ``dataset`` (0 = all) and write prediction
        files into ``out_dir`` in the formats of docs/formats.md, with the matching ground truth
        (``Dataset.ground_truth``); ``esgkit eval`` scores each with its evaluator. ``skip`` names
        parts not to predict."""
        raise NotImplementedError(f"{type(self).__name__} writes no predictions for `esgkit eval`")


def _checked_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` with its inputs passed through ``self.check_inputs`` first (positional inputs after
    the image are named by ``run``'s signature, so they are checked too)."""
    params = list(inspect.signature(run).parameters.values())[2:]  # after self, image
    names = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    by_position = not any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in params)

    @functools.wraps(run)
    def checked_run(self: Pipeline, image: Any, *args: Any, **inputs: Any) -> Any:
        if args and by_position and len(args) <= len(names):
            clash = [n for n in names[: len(args)] if n in inputs]
            if clash:
                raise TypeError(f"{type(self).__name__}.run() got multiple values for argument {clash[0]!r}")
            inputs = {**dict(zip(names, args)), **inputs}
            args = ()
        return run(self, image, *args, **self.check_inputs(inputs))

    checked_run._checks_inputs = True  # type: ignore[attr-defined]
    return checked_run


INTERFACES: dict[str, type[Component]] = {
    cls.kind: cls
    for cls in (
        Segmenter, Colorizer, ColormapEncoder, VisionEncoder, Fuser, MaskDecoder,
        LanguageDecoder, Associator, TextEncoder, Referrer, Dataset, Evaluator, Task, Executor, Pipeline,
    )
}
"""Every registry namespace and the interface its components implement."""


__all__ = [
    "INTERFACES", "Associator", "Colorizer", "ColormapEncoder", "Component", "Dataset", "Evaluator", "Executor",
    "Fuser", "LanguageDecoder", "LanguageOutput", "MaskDecoder", "MaskDecoderOutput", "NoConfig", "Pipeline",
    "Predictions", "Referral", "Referrer", "Segmenter", "Task", "TextEncoder", "TextFeatures", "VisionEncoder",
]
