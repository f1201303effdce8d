"""Reading and writing images and entity-mask files, with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .types import EntityMasks, decode_rle


def load_image(path: str | Path) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3). Grey and RGBA images are converted."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def save_image(path: str | Path, image: np.ndarray) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path)


def load_id_map_png(path: str | Path) -> np.ndarray:
    """An id map from a PNG: RGB PNGs use the COCO-panoptic rule id = R + 256·G + 256²·B,
    single-channel PNGs their value."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask file {path}: not a readable PNG ({exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.int64)
        return arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]
    return arr.astype(np.int64)


def save_id_map_png(path: str | Path, id_map: np.ndarray) -> None:
    """Write an id map as a COCO-panoptic RGB PNG (id = R + 256·G + 256²·B)."""
    id_map = np.asarray(id_map, np.int64)
    rgb = np.stack([id_map % 256, (id_map // 256) % 256, (id_map // 65536) % 256], -1).astype(np.uint8)
    save_image(path, rgb)


def load_masks(path: str | Path) -> EntityMasks:
    """Entity masks from a file any segmentation framework can write:

    * ``.json`` — a list of ``{"segmentation": <COCO RLE>, "score"?: float, "id"?: int}`` (COCO
      results style), or ``{"entities": [...]}`` (esgkit's grounding.json; with ``"image_size": [H, W]``
      it may hold no entity);
    * ``.png`` — an id map (0 = no entity; RGB uses id = R + 256·G + 256²·B).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask file {path}: no such file")
    if path.suffix.lower() == ".png":
        return EntityMasks.from_id_map(load_id_map_png(path))
    if path.suffix.lower() != ".json":
        raise InputError(f"mask file {path}: unsupported extension {path.suffix!r} (use .json with COCO RLE, or .png)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"mask file {path}: malformed JSON ({exc})") from exc
    items = data.get("entities") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"mask file {path}: expected a list of {{segmentation: RLE}} objects")
    try:
        masks = [decode_rle(it["segmentation"]) for it in items]
        scores = [float(it.get("score", 1.0)) for it in items]
        ids = [int(it.get("id", i + 1)) for i, it in enumerate(items)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"mask file {path}: bad entry ({type(exc).__name__}: {exc})") from exc
    if not masks:
        size = data.get("image_size") if isinstance(data, dict) else None
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise InputError(f"mask file {path}: holds no masks, and its image size is unknown "
                             "(an empty result is written as {\"image_size\": [H, W], \"entities\": []})")
        return EntityMasks(np.zeros((0, size[0], size[1]), bool))
    sizes = {m.shape for m in masks}
    if len(sizes) > 1:
        raise InputError(f"mask file {path}: masks of different sizes {sorted(sizes)}")
    return EntityMasks(np.stack(masks), scores, ids)


def save_masks(path: str | Path, masks: EntityMasks) -> None:
    """Write masks as a COCO-results-style RLE JSON that ``load_masks`` reads back (no entity:
    ``{"image_size": [H, W], "entities": []}``, so the image size survives)."""
    from .types import encode_rle

    items = [{"id": int(i), "score": float(s), "segmentation": encode_rle(m)}
             for i, s, m in zip(masks.ids, masks.scores, masks.masks)]
    data: Any = items if items else {"image_size": list(masks.image_size), "entities": []}
    Path(path).write_text(json.dumps(data))
