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
        if len(np.unique(ids)) != n:
            raise InputError("EntityMasks.ids must be unique")
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
    def from_id_map(cls, id_map: np.ndarray, ignore: tuple[int, ...] = (0,)) -> EntityMasks:
        """One entity per distinct value of an integer id map (values in ``ignore`` are background)."""
        id_map = np.asarray(id_map)
        if id_map.ndim != 2:
            raise InputError(f"an id map must be (H, W); got shape {tuple(id_map.shape)}")
        ids = [int(v) for v in np.unique(id_map) if int(v) not in ignore]
        masks = np.stack([id_map == v for v in ids]) if ids else np.zeros((0, *id_map.shape), bool)
        return cls(masks, ids=np.array(ids, np.int64))

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


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """bool (H, W) mask from a COCO RLE (compressed str/bytes counts or uncompressed list)."""
    from pycocotools import mask as mask_utils

    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


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
    def from_dict(cls, data: dict[str, Any]) -> Grounding:
        try:
            h, w = data["image_size"]
            ents = data["entities"]
            masks = np.stack([decode_rle(e["segmentation"]) for e in ents]) if ents else np.zeros((0, h, w), bool)
            em = EntityMasks(masks, [e["score"] for e in ents], [e["id"] for e in ents])
            phrases = [
                PhraseGrounding(NounPhrase(p["text"], p["span"][0], p["span"][1], p["plural"]), p["entity_ids"], p["scores"])
                for p in data["phrases"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a grounding.json document: {type(exc).__name__}: {exc}") from exc
        caption = Caption(data["caption"], tuple(g.phrase for g in phrases))
        return cls(caption, tuple(phrases), em)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Grounding:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise InputError(f"{path}: no such file") from exc
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: malformed JSON ({exc})") from exc
