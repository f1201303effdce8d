"""What the web page works on: models built once and reused, images and results kept in memory.

The page's "any segmenter" is one GELLA pipeline whose segmenter is ``ground_truth``, fed the entity
masks of whichever segmenter the user picked: each segmenter is built once from its config's
``segmenter`` section and its masks are kept per image, so grounding the same image again, or the same
caption on two segmenters side by side, runs no segmenter twice. ``esgkit run --segmenter CONFIG``
computes the same thing in one process (the UI's tests check that the two agree pixel for pixel).
"""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.config import load_config, section_of, shipped_configs
from esgkit.core.errors import InputError
from esgkit.core.pipeline import build_pipeline
from esgkit.core.registry import BUILTIN_PLUGIN, get_registry
from esgkit.core.schema import to_container
from esgkit.core.types import EntityMasks

GROUND_TRUTH = "ground_truth"
PACKAGE = Path(__file__).resolve().parents[1]
KEEP = 24  # images and results kept in memory; the oldest are dropped


@dataclass
class Picture:
    """An image the page works on, and its annotated masks when it is a generated scene."""

    image: np.ndarray
    name: str
    masks: EntityMasks | None = None
    caption: str | None = None
    entities: dict[str, EntityMasks] = field(default_factory=dict)  # segmenter config → its masks


@dataclass
class Outcome:
    """One grounding (or referral) the page shows: kept so a phrase click and the downloads need no rerun."""

    picture: str
    segmenter: str
    system: str
    result: Any
    seconds: float
    warnings: list[str]


def _shipped_with_weights() -> dict[str, dict[str, Any]]:
    """Shipped configs (esgkit's and every plugin's) that name weights, resolved, by name: each loaded once."""
    configs = {}
    for name in sorted(shipped_configs()):
        try:
            cfg = to_container(load_config(name))
        except Exception:  # a config that does not load is not offered (`esgkit check` reports it)
            continue
        section = cfg.get("pipeline") or {}
        segmenter = cfg.get("segmenter") or {}
        if not section.get("meta_device") and (section.get("checkpoint") or segmenter.get("checkpoint")
                                               or segmenter.get("path")):
            configs[name] = cfg
    return configs


class Workspace:
    """Models, pictures and outcomes of one ``esgkit ui`` server; one model call at a time (a lock)."""

    def __init__(self, config: str = "esg_tiny", max_side: int = 4096) -> None:
        self.config = config
        self.max_side = max_side
        self.lock = threading.Lock()  # one model call at a time (the page's requests come on threads)
        self._building = threading.Lock()  # and each model built once, even when two requests ask at once
        self.pictures: OrderedDict[str, Picture] = OrderedDict()
        self.outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._pipelines: dict[str, Any] = {}
        self._segmenters: dict[str, Any] = {}
        # the choices: every shipped segmenter config (esgkit's and the plugins'), then every segmenter a
        # plugin registers, with its defaults (a third party's segmenter shows up without a config)
        shipped = {n: ((c.get("pipeline") or {}).get("name"), c) for n, c in _shipped_with_weights().items()}
        self._sections = {n: c["segmenter"] for n, (kind, c) in shipped.items() if kind == "colormap"}
        registry = get_registry()
        for name in registry.names("segmenter"):
            if registry.entry("segmenter", name).origin != BUILTIN_PLUGIN:
                self._sections.setdefault(name, {"name": name})
        self.segmenter_choices = [GROUND_TRUTH, *self._sections]
        self.referring_choices = [n for n, (kind, _) in shipped.items() if kind == "referring"]
        default = section_of(config, "segmenter", "--config").get("name")
        # the config's own segmenter first: the page's default is what `esgkit run CONFIG` does
        own = [n for n, section in self._sections.items() if section.get("name") == default]
        self.default_segmenter = own[0] if own else GROUND_TRUTH

    # ------------------------------------------------------------------ models (built once)
    def pipeline(self, config: str) -> Any:
        """GELLA (``self.config``) or a referring config, built once with the ``ground_truth`` segmenter:
        the masks come from the page's chosen segmenter."""
        with self._building:
            if config not in self._pipelines:
                cfg = load_config(config, sections={"segmenter": {"name": GROUND_TRUTH}})
                self._pipelines[config] = build_pipeline(to_container(cfg))
            return self._pipelines[config]

    def segmenter(self, name: str) -> Any:
        if name not in self._sections:
            raise InputError(f"unknown segmenter {name!r}: choose one of {', '.join(self.segmenter_choices)}")
        with self._building:
            if name not in self._segmenters:
                self._segmenters[name] = get_registry().build("segmenter", self._sections[name])
            return self._segmenters[name]

    # ------------------------------------------------------------------ pictures
    def add(self, picture: Picture) -> str:
        h, w = picture.image.shape[:2]
        if max(h, w) > self.max_side:
            raise InputError(f"{picture.name} is {w}x{h} pixels; this page takes images up to {self.max_side} "
                             "pixels a side: downscale it, or start the page with a larger --max-side")
        key = uuid.uuid4().hex[:12]
        self.pictures[key] = picture
        _trim(self.pictures)
        return key

    def picture(self, key: str) -> Picture:
        if key not in self.pictures:
            raise InputError(f"no image {key!r} on this page (it was dropped or the server restarted): "
                             "upload or generate it again")
        return self.pictures[key]

    def entities(self, key: str, segmenter: str) -> EntityMasks:
        """The picture's entities from ``segmenter`` (computed once, then reused)."""
        picture = self.picture(key)
        if segmenter == GROUND_TRUTH:
            if picture.masks is None:
                raise InputError("ground-truth masks exist only for generated scenes: pick a segmenter for an "
                                 "uploaded image")
            return picture.masks
        if segmenter not in picture.entities:
            with self.lock:
                picture.entities[segmenter] = self.segmenter(segmenter).segment(picture.image, image_id=key)
        return picture.entities[segmenter]

    # ------------------------------------------------------------------ grounding
    def ground(self, key: str, segmenter: str, text: str | None, threshold: float,
               system: str | None = None) -> str:
        """Ground ``text`` (None: GELLA describes the image) — or with ``system``, a referring config,
        refer to it — on ``segmenter``'s entities; returns the outcome's key."""
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"threshold {threshold} must lie in [0, 1]")
        if system is not None and system not in self.referring_choices:
            raise InputError(f"unknown referring system {system!r}: choose one of {', '.join(self.referring_choices)}")
        if system is not None and not text:
            raise InputError("type a referring expression (for example: the red circle left of the square)")
        picture = self.picture(key)
        masks = self.entities(key, segmenter)
        pipeline = self.pipeline(system or self.config)
        with self.lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            if system is None:
                result = _with_threshold(pipeline, threshold, lambda: pipeline.run(
                    picture.image, masks, caption=text, image_id=key))
            else:
                result = pipeline.run(picture.image, expression=text, masks=masks, image_id=key)
            seconds = time.perf_counter() - start
        messages = list(dict.fromkeys(str(w.message) for w in caught if not _is_noise(w)))
        outcome = uuid.uuid4().hex[:12]
        self.outcomes[outcome] = Outcome(key, segmenter, system or self.config, result, seconds, messages)
        _trim(self.outcomes)
        return outcome

    def outcome(self, key: str) -> Outcome:
        if key not in self.outcomes:
            raise InputError(f"no result {key!r} on this page (it was dropped or the server restarted): ground again")
        return self.outcomes[key]


def _with_threshold(pipeline: Any, threshold: float, call: Callable[[], Any]) -> Any:
    """Run ``call`` with the pipeline's association threshold set to the page's slider, then restore it."""
    saved = pipeline.config.threshold
    pipeline.config.threshold = threshold
    try:
        return call()
    finally:
        pipeline.config.threshold = saved


def _is_noise(w: warnings.WarningMessage) -> bool:
    """Library chatter (deprecations, other packages' warnings) is not for the page; esgkit's own
    warnings (an empty result, untrained weights) are."""
    return issubclass(w.category, (DeprecationWarning, FutureWarning)) or \
        not Path(w.filename).resolve().is_relative_to(PACKAGE)


def _trim(store: OrderedDict) -> None:
    while len(store) > KEEP:
        store.popitem(last=False)


__all__ = ["GROUND_TRUTH", "Outcome", "Picture", "Workspace"]
