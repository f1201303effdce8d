"""Data types passed between components. Validated on construction so a bad array fails where it
is made, not three components later. They hold NumPy arrays (not tensors) so that the core stays
importable without torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .fields import is_int, is_number, kind
from .json_input import read_json
from .limits import check_entities, check_mask_stack, check_pixels


def _as_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: cannot convert to {np.dtype(dtype).name} array ({exc})") from exc


@dataclass(frozen=True)
class EntityMasks:
    """Class-agnostic entity masks of one image.

    masks:  bool  (N, H, W) — one binary mask per entity (may overlap unless a segmenter says not).
    scores: float32 (N,)    — confidence per entity (1.0 for ground truth).
    ids:    int64 (N,)      — stable entity ids (e.g. COCO-panoptic segment ids); default 0..N-1.
    """

    masks: np.ndarray
    scores: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3:
            raise InputError(f"EntityMasks.masks must be (N, H, W); got shape {tuple(masks.shape)}")
        if masks.dtype != np.bool_:
            if masks.size and not np.isin(np.unique(masks), [0, 1]).all():
                raise InputError("EntityMasks.masks must be binary (bool or 0/1 values)")
            masks = masks.astype(bool)
        n = masks.shape[0]
        scores = np.ones(n, np.float32) if self.scores is None else _as_array(self.scores, np.float32, "scores")
        ids = np.arange(n, dtype=np.int64) if self.ids is None else _as_array(self.ids, np.int64, "ids")
        if scores.shape != (n,):
            raise InputError(f"EntityMasks.scores must have shape ({n},); got {tuple(scores.shape)}")
        if ids.shape != (n,):
            raise InputError(f"EntityMasks.ids must have shape ({n},); got {tuple(ids.shape)}")
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != n:
            dup = ", ".join(str(int(i)) for i in uniq[counts > 1][:10])
            raise InputError(f"EntityMasks.ids must be unique; id(s) {dup} appear more than once")
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "ids", ids)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image the masks belong to."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int) -> EntityMasks:
        return cls(np.zeros((0, height, width), bool))

    @classmethod
    def from_id_map(cls, id_map: np.ndarray, ignore: tuple[int, ...] = (0,), what: str = "id map") -> EntityMasks:
        """One entity per distinct value of an integer id map (values in ``ignore`` are background).
        The distinct values are counted before the N×H×W masks are built, so a photo or a dense
        label map passed as an id map fails fast on ``max_entities`` instead of exhausting memory."""
        id_map = np.asarray(id_map)
        if id_map.ndim != 2:
            raise InputError(f"{what}: an id map must be (H, W); got shape {tuple(id_map.shape)}")
        if id_map.dtype.kind not in "iub":
            raise InputError(f"{what}: an id map must hold integers; got {id_map.dtype}")
        values, inverse = np.unique(id_map, return_inverse=True)
        keep = ~np.isin(values, np.asarray(ignore, np.int64))
        check_entities(int(keep.sum()), what)
        check_mask_stack(int(keep.sum()), *id_map.shape, what)
        index = np.cumsum(keep) - 1  # value position → entity position (for kept values)
        masks = np.zeros((int(keep.sum()), *id_map.shape), bool)
        inverse = inverse.reshape(id_map.shape)
        rows, cols = np.nonzero(keep[inverse])
        masks[index[inverse[rows, cols]], rows, cols] = True
        return cls(masks, ids=values[keep].astype(np.int64))

    def to_id_map(self, background: int = 0) -> np.ndarray:
        """Non-overlapping id map: where masks overlap, the higher-scoring entity wins."""
        id_map = np.full(self.image_size, background, np.int64)
        for i in np.argsort(self.scores, kind="stable"):  # ascending: higher scores paint last
            id_map[self.masks[i]] = self.ids[i]
        return id_map

    def select(self, index: Any) -> EntityMasks:
        """A subset (boolean mask or integer indices), keeping ids and scores aligned."""
        return EntityMasks(self.masks[index], self.scores[index], self.ids[index])

    def check_image_size(self, height: int, width: int, what: str = "masks") -> None:
        """Raise an InputError naming both sizes when the masks do not match the image."""
        if self.image_size != (height, width):
            h, w = self.image_size
            raise InputError(
                f"{what} are {w}x{h} (WxH) but the image is {width}x{height}; "
                "give masks made for this image, or resize them first"
            )


@dataclass(frozen=True)
class Colormap:
    """The colour image that encodes entity masks for the colormap encoder.

    image:  uint8 (H, W, 3), black (0, 0, 0) where no entity is.
    colors: uint8 (N, 3), the colour painted for each entity of the EntityMasks it was made from.
    """

    image: np.ndarray
    colors: np.ndarray

    def __post_init__(self) -> None:
        image = np.asarray(self.image)
        colors = np.asarray(self.colors)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"Colormap.image must be uint8 (H, W, 3); got {image.dtype} {tuple(image.shape)}")
        if colors.ndim != 2 or colors.shape[1] != 3:
            raise InputError(f"Colormap.colors must be (N, 3); got {tuple(colors.shape)}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "colors", colors.astype(np.uint8))


@dataclass(frozen=True)
class NounPhrase:
    """A noun phrase of a caption: its text, character span [start, end) and plural flag."""

    text: str
    start: int
    end: int
    plural: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.end):
            raise InputError(f"NounPhrase {self.text!r}: bad span [{self.start}, {self.end})")


@dataclass(frozen=True)
class Caption:
    """A caption and its noun phrases; each phrase's span must cut its text out of the caption."""

    text: str
    phrases: tuple[NounPhrase, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrases", tuple(self.phrases))
        for p in self.phrases:
            if self.text[p.start : p.end] != p.text:
                raise InputError(
                    f"NounPhrase {p.text!r} span [{p.start}, {p.end}) cuts "
                    f"{self.text[p.start:p.end]!r} out of the caption"
                )


@dataclass(frozen=True)
class PhraseGrounding:
    """One noun phrase grounded onto zero, one or several entities (one-to-many)."""

    phrase: NounPhrase
    entity_ids: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entity_ids", tuple(int(i) for i in self.entity_ids))
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        if len(self.entity_ids) != len(self.scores):
            raise InputError(f"PhraseGrounding {self.phrase.text!r}: {len(self.entity_ids)} ids but {len(self.scores)} scores")


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (compressed counts as str) of one bool (H, W) mask, via pycocotools."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def check_rle(rle: Any, what: str = "RLE", image_size: tuple[int, int] | None = None) -> tuple[int, int, np.ndarray]:
    """``(H, W, run lengths)`` of a COCO RLE (compressed str/bytes counts or an uncompressed list),
    checked before anything is allocated. pycocotools trusts its input: a huge size allocates it,
    and counts summing short of H·W decode to uninitialised memory. With ``image_size`` (H, W) an
    RLE of another size is refused, naming both."""
    if not isinstance(rle, dict):
        raise InputError(f"{what}: segmentation is {kind(rle)}, not a COCO RLE {{\"size\": [H, W], \"counts\": ...}}")
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) for v in size)):
        raise InputError(f"{what}: RLE size is {kind(size)}; expected a list [H, W] of two integers")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise InputError(f"{what}: RLE size [{h}, {w}] is not a mask size; both sides must be positive")
    check_pixels(h, w, f"{what}: RLE")
    if image_size is not None and (h, w) != tuple(image_size):
        raise InputError(f"{what}: mask is {w}x{h} (WxH) but the image is {image_size[1]}x{image_size[0]}; "
                         "give masks made for this image, or resize them first")
    if isinstance(counts, list):
        cnts = _list_counts(counts, what)
    elif isinstance(counts, (str, bytes)):
        cnts = _string_counts(counts, h * w, what)
    else:
        raise InputError(f"{what}: RLE counts is {kind(counts)}; expected a compressed string or a list of run lengths")
    if cnts.size and (cnts.min() < 0 or cnts.max() > h * w):
        raise InputError(f"{what}: RLE holds a run length outside [0, {h * w:,}]; the RLE is corrupt")
    total = int(cnts.sum()) if cnts.size else 0  # no overflow: len(cnts) ≤ 7·(H·W + 1) and each ≤ H·W
    if total != h * w:
        raise InputError(f"{what}: RLE run lengths sum to {total:,} but the mask is {w}x{h} (WxH) = {h * w:,} "
                         "pixels; the RLE is corrupt or was made for another size")
    return h, w, cnts


def _list_counts(counts: list, what: str) -> np.ndarray:
    try:
        cnts = np.asarray(counts)
    except (ValueError, TypeError, OverflowError):
        cnts = None
    if cnts is None or cnts.ndim != 1 or (cnts.size and cnts.dtype.kind not in "iu"):
        raise InputError(f"{what}: uncompressed RLE counts must be a flat list of non-negative integers")
    if cnts.dtype.kind == "u" and cnts.size and cnts.max() > np.iinfo(np.int64).max:
        raise InputError(f"{what}: RLE holds a run length too large to be real; the RLE is corrupt")
    return cnts.astype(np.int64)


def _string_counts(counts: str | bytes, pixels: int, what: str) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' rleFrString, vectorised): 6-bit
    chars from '0', 5 data bits + a continue bit, sign-extended, each run after the 3rd a delta
    to the run two before."""
    bad = f"{what}: RLE counts is not a valid compressed COCO RLE string"
    if isinstance(counts, str):
        if not counts.isascii():
            raise InputError(bad + " (non-ASCII characters)")
        counts = counts.encode("ascii")
    if len(counts) > 7 * (pixels + 1):
        raise InputError(bad + f" (too long for {pixels:,} pixels)")
    if not counts:
        return np.zeros(0, np.int64)
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    more = (c & 0x20) != 0
    if c.min() < 0 or c.max() > 63 or more[-1]:
        raise InputError(bad)
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 7 chars hold any 32-bit run; longer ones would overflow pycocotools
        raise InputError(bad + " (a run too long to be real)")
    shift = 5 * (np.arange(c.size) - np.repeat(starts, lengths))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])
    cnts[2::2] = np.cumsum(x[2::2])
    return cnts


def decode_rle(rle: Any, what: str = "RLE", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """bool (H, W) mask from a COCO RLE (compressed str/bytes counts or uncompressed list), checked
    by ``check_rle`` first (an InputError naming ``what`` on any fault)."""
    return _decode_counts(*check_rle(rle, what, image_size))


def _decode_counts(h: int, w: int, cnts: np.ndarray) -> np.ndarray:
    values = np.zeros(cnts.size, bool)
    values[1::2] = True  # runs alternate 0, 1, 0, … in column-major order
    return np.repeat(values, cnts).reshape(w, h).T


def masks_from_entries(items: Any, what: str, image_size: tuple[int, int] | None = None,
                       need_ids: bool = False) -> EntityMasks:
    """EntityMasks from ``[{"segmentation": RLE, "score"?: float, "id"?: int}, ...]`` (a masks file,
    grounding.json's entities). Every entry is checked, and named by its index, before any mask is
    decoded; without ``need_ids`` a missing id defaults to the entry's index + 1."""
    if not isinstance(items, list):
        raise InputError(f"{what}: entities are {kind(items)}; expected a list of {{\"segmentation\": RLE}} objects")
    check_entities(len(items), what)
    runs, scores, ids, seen = [], [], [], {}
    for k, item in enumerate(items):
        where = f"{what}: bad entry {k}"
        if not isinstance(item, dict) or "segmentation" not in item:
            problem = "has no" if isinstance(item, dict) else f"is {kind(item)}, not an object with a"
            raise InputError(f"{where}: {problem} \"segmentation\" (a COCO RLE)")
        score = item.get("score", 1.0)
        if not is_number(score):
            raise InputError(f"{where}: score is {kind(score)}; expected a finite number")
        if "id" not in item and need_ids:
            raise InputError(f"{where}: has no \"id\" (an integer)")
        ident = item.get("id", k + 1)
        if not (is_int(ident) and -(2**63) <= ident < 2**63):
            raise InputError(f"{where}: id is {kind(ident)}; expected an integer")
        if int(ident) in seen:
            raise InputError(f"{what}: entries {seen[int(ident)]} and {k} share the id {int(ident)}; "
                             "entity ids must be unique")
        seen[int(ident)] = k
        h, w, cnts = check_rle(item["segmentation"], where, image_size)
        if runs and (h, w) != runs[0][:2]:
            raise InputError(f"{where}: mask is {w}x{h} (WxH) but entry 0 is {runs[0][1]}x{runs[0][0]}; "
                             "all masks of one file belong to one image")
        runs.append((h, w, cnts))
        scores.append(float(score))
        ids.append(int(ident))
    if not runs:
        if image_size is None:
            raise InputError(f"{what}: holds no masks, and its image size is unknown")
        return EntityMasks.empty(*image_size)
    h, w = runs[0][:2]
    check_mask_stack(len(runs), h, w, what)
    masks = np.empty((len(runs), h, w), bool)  # filled in place: no second copy of the stack
    for k, r in enumerate(runs):
        masks[k] = _decode_counts(*r)
    return EntityMasks(masks, scores, ids)


def check_image_size(size: Any, what: str) -> tuple[int, int]:
    """A JSON ``image_size`` [H, W], checked (two positive integers within ``max_image_pixels``)."""
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) and v > 0 for v in size)):
        raise InputError(f"{what}: image_size is {kind(size)}; expected [H, W], two positive integers")
    check_pixels(int(size[0]), int(size[1]), f"{what}: image_size")
    return int(size[0]), int(size[1])


@dataclass(frozen=True)
class Grounding:
    """The result of grounding a caption: phrases → entities, plus the entity masks themselves."""

    caption: Caption
    groundings: tuple[PhraseGrounding, ...]
    masks: EntityMasks

    def __post_init__(self) -> None:
        object.__setattr__(self, "groundings", tuple(self.groundings))
        known = set(int(i) for i in self.masks.ids)
        for g in self.groundings:
            missing = [i for i in g.entity_ids if i not in known]
            if missing:
                raise InputError(f"grounding of {g.phrase.text!r} names unknown entity ids {missing}")

    def phrase_mask(self, index: int) -> np.ndarray:
        """Union of the masks grounded to phrase ``index`` (the PNG convention for plurals)."""
        g = self.groundings[index]
        pos = {int(i): k for k, i in enumerate(self.masks.ids)}
        out = np.zeros(self.masks.image_size, bool)
        for i in g.entity_ids:
            out |= self.masks.masks[pos[i]]
        return out

    def to_dict(self) -> dict[str, Any]:
        h, w = self.masks.image_size
        return {
            "caption": self.caption.text,
            "image_size": [h, w],
            "phrases": [
                {
                    "text": g.phrase.text,
                    "span": [g.phrase.start, g.phrase.end],
                    "plural": g.phrase.plural,
                    "entity_ids": list(g.entity_ids),
                    "scores": [round(s, 6) for s in g.scores],
                }
                for g in self.groundings
            ],
            "entities": [
                {"id": int(i), "score": float(s), "segmentation": encode_rle(m)}
                for i, s, m in zip(self.masks.ids, self.masks.scores, self.masks.masks)
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, what: str = "grounding.json document") -> Grounding:
        """The inverse of ``to_dict``; every field is checked, so a hand-edited or foreign file
        fails with an InputError naming ``what`` and the entry, not a KeyError or a numpy error."""
        if not isinstance(data, dict):
            raise InputError(f"{what}: top level is {kind(data)}; expected a grounding.json object")
        missing = [k for k in ("caption", "image_size", "entities", "phrases") if k not in data]
        if missing:
            raise InputError(f"{what}: not a grounding.json document (no {', '.join(missing)}); "
                             "write one with `esgkit run` or Grounding.save")
        size = check_image_size(data["image_size"], what)
        masks = masks_from_entries(data["entities"], what, size, need_ids=True)
        if not isinstance(data["caption"], str) or not isinstance(data["phrases"], list):
            raise InputError(f"{what}: caption must be a string and phrases a list")
        phrases = []
        for k, p in enumerate(data["phrases"]):
            where = f"{what}: bad phrase {k}"
            span = p.get("span") if isinstance(p, dict) else None
            if not (isinstance(span, list) and len(span) == 2 and all(is_int(v) for v in span)
                    and isinstance(p.get("text"), str) and isinstance(p.get("plural"), bool)
                    and isinstance(p.get("entity_ids"), list) and all(is_int(i) for i in p["entity_ids"])
                    and isinstance(p.get("scores"), list) and all(is_number(v) for v in p["scores"])):
                raise InputError(f"{where}: expected {{\"text\": str, \"span\": [start, end], \"plural\": bool, "
                                 "\"entity_ids\": [int, ...], \"scores\": [number, ...]}")
            try:
                phrase = NounPhrase(p["text"], int(span[0]), int(span[1]), p["plural"])
                phrases.append(PhraseGrounding(phrase, p["entity_ids"], p["scores"]))
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
        try:
            return cls(Caption(data["caption"], tuple(g.phrase for g in phrases)), tuple(phrases), masks)
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write ``grounding.json`` atomically (a crash leaves the old file or none)."""
        from .outputs import atomic_write

        atomic_write(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Grounding:
        return cls.from_dict(read_json(path, "grounding file"), f"grounding file {path}")
