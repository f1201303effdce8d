"""Segmenter outputs cached on disk, so that evaluating or training GELLA variants on the masks of
one segmenter runs that segmenter once per image.

An entry is ``<root>/<name>-<key>/<image digest>.json`` (the ``core.io.save_masks`` format, so the
``from_files`` segmenter reads a cache folder too). ``key`` hashes the segmenter's registered name,
its validated config and a digest of the weights it actually holds (its ``state_dict``), so a new
checkpoint, an overridden option or a randomly initialised model never reuses another one's masks;
the image digest hashes the pixels. Each folder keeps ``segmenter.json``: what made its masks.

The root is ``$ESGKIT_CACHE_DIR/segments``, else ``$XDG_CACHE_HOME/esgkit/segments``, else
``~/.cache/esgkit/segments``; ``esgkit eval`` takes ``--mask-cache DIR`` and ``--no-mask-cache``,
GELLA training ``train.mask_cache``. Deleting a folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import EntityMasks, Segmenter, get_registry
from esgkit.core.errors import InputError
from esgkit.core.io import load_masks, save_masks
from esgkit.core.outputs import atomic_write


def default_cache_dir() -> Path:
    """Where segmenter outputs are cached unless told otherwise (module docstring)."""
    if os.environ.get("ESGKIT_CACHE_DIR"):
        return Path(os.environ["ESGKIT_CACHE_DIR"]).expanduser() / "segments"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "esgkit" / "segments"


def weights_digest(segmenter: Any) -> str:
    """sha256 over the segmenter's parameters and buffers (names, shapes, dtypes, bytes); "" when it
    holds none (e.g. a segmenter that reads files)."""
    state = segmenter.state_dict() if callable(getattr(segmenter, "state_dict", None)) else {}
    if not state:
        return ""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def segmenter_identity(segmenter: Any) -> dict[str, Any]:
    """What determines a segmenter's output: its registered name (else its class), its config and the
    digest of its weights. ``esgkit eval`` records it beside the metrics."""
    registry = get_registry()
    names = [n for n in registry.names("segmenter") if registry.get("segmenter", n, "segmenter") is type(segmenter)]
    config = getattr(segmenter, "config", None)
    return {"name": names[0] if names else f"{type(segmenter).__module__}.{type(segmenter).__qualname__}",
            "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {},
            "weights_sha256": weights_digest(segmenter)}


def image_digest(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image)
    return hashlib.sha256(f"{image.shape}:{image.dtype}".encode() + image.tobytes()).hexdigest()[:32]


class CachedSegmenter(Segmenter):
    """Wraps a segmenter: each image's masks are read from the cache, or computed once and stored.
    ``hits`` / ``misses`` count what happened (shown by ``esgkit eval``). With ``build`` instead of a
    built segmenter (and its ``identity`` known, e.g. from the grid stage that stored its masks), the
    segmenter is built only when an image misses, so reading stored masks costs no model."""

    cacheable = False  # already cached

    def __init__(self, inner: Segmenter | None, identity: Mapping[str, Any], root: str | Path,
                 build: Callable[[], Segmenter] | None = None) -> None:
        if inner is None and build is None:
            raise ValueError("CachedSegmenter needs a segmenter or a function that builds one")
        self._inner, self._build, self.identity = inner, build, dict(identity)
        key = hashlib.sha256(json.dumps(self.identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.folder = Path(root) / f"{self.identity['name']}-{key}"
        self.hits = self.misses = 0

    @property
    def inner(self) -> Segmenter:
        """The wrapped segmenter (built on first use when given as ``build``)."""
        if self._inner is None:
            self._inner = self._build()  # type: ignore[misc]
        return self._inner

    @property
    def built(self) -> bool:
        """Whether the wrapped segmenter exists (False while every image was read from the cache)."""
        return self._inner is not None

    def __getattr__(self, name: str) -> Any:  # the wrapped segmenter's own attributes (config, model, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        path = self.folder / f"{image_digest(image)}.json"
        if path.is_file():
            try:
                masks = load_masks(path)
                masks.check_image_size(image.shape[0], image.shape[1], what=f"cached masks {path}")
                self.hits += 1
                return masks
            except InputError:  # a damaged entry (e.g. a disk filled mid-write elsewhere): recompute it
                pass
        masks = self.inner.segment(image, annotation=annotation, image_id=image_id)
        self.misses += 1
        self._store(path, masks)
        return masks

    def _store(self, path: Path, masks: EntityMasks) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "segmenter.json"
        if not about.is_file():
            atomic_write(about, json.dumps(self.identity, indent=1, default=str))
        save_masks(path, masks)  # atomic: readers never see half a file


def cached_segmenter(segmenter: Segmenter, root: str | Path | None = None,
                     identity: Mapping[str, Any] | None = None) -> Segmenter:
    """``segmenter`` behind a disk cache (root: ``default_cache_dir()``), or itself when its output
    is not worth caching (``Segmenter.cacheable`` is False: ground truth, files, already cached).
    ``identity``: its ``segmenter_identity`` when already computed (hashing the weights once)."""
    if not getattr(segmenter, "cacheable", True):
        return segmenter
    return CachedSegmenter(segmenter, identity or segmenter_identity(segmenter),
                           default_cache_dir() if root is None else root)


__all__ = ["CachedSegmenter", "cached_segmenter", "default_cache_dir", "image_digest", "segmenter_identity",
           "weights_digest"]
