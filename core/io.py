"""Reading and writing images and entity-mask files, with errors that name the file."""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .limits import check_pixels, limits, raise_hint
from .json_input import read_json
from .fields import kind
from .types import EntityMasks, check_image_size, masks_from_entries


_PIL_GUARD = threading.Lock()


@contextmanager
def open_image(path: str | Path, what: str = "image") -> Iterator[Any]:
    """A PIL image, opened with the bounds checked: a missing, empty or folder path, an unreadable
    file and an image over ``max_image_pixels`` (checked from the header, before any pixel is
    decoded) are InputErrors naming the file. Pillow's own bomb guard is set to our limit for the
    duration, and its warning made an error, so the two agree. Multi-frame files give frame 0."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: " + ("is a folder; give an image file" if path.is_dir() else "no such file"))
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path}: the file is empty (0 bytes); re-create or re-download it")
    bound = limits().max_image_pixels
    try:
        with _PIL_GUARD:  # Pillow's guard is a module global: set it for this open only, one thread at a time
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, bound
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(pixels.group(1)):,} pixels" if pixels else "its size"
        raise InputError(f"{what} {path}: {count} exceeds the limit of {bound:,} (max_image_pixels); "
                         f"{raise_hint('max_image_pixels')}") from None
    except Exception as exc:  # Pillow raises many types on a corrupt header (OSError, SyntaxError, struct.error …)
        raise InputError(f"{what} {path}: not a readable image ({type(exc).__name__}: {exc}); "
                         "give a PNG, JPEG, TIFF or other image file Pillow reads") from None
    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise InputError(f"{what} {path}: the image is {w}x{h} (WxH), it has no pixel")
        check_pixels(h, w, f"{what} {path}")
        try:
            frames = getattr(im, "n_frames", 1)  # counting frames reads (and may fail on) later ones
            im.load()
        except Exception as exc:  # truncated data: OSError; other corruptions: ValueError, TypeError …
            raise InputError(f"{what} {path}: not a readable image, truncated or corrupt "
                             f"({type(exc).__name__}: {exc}); re-create or re-download it") from None
        if frames > 1:
            warnings.warn(f"{what} {path} has {frames} frames (animated or multi-page); using the first",
                          stacklevel=4)  # the caller of load_image / load_id_map_png
        yield im


def load_image(path: str | Path) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3), whatever the file's mode:

    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr`` …: Pillow's conversion to RGB;
    * with alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency): alpha is dropped, the colour kept;
    * 16-bit ``I;16*``: value / 257 (the full 16-bit range onto 0..255);
    * 32-bit ``I``: as 16-bit when the values lie in 0..65535 (how 16-bit files often load), else
      min-max normalised;
    * float ``F``: values within [0, 1] × 255, other ranges min-max normalised; NaN/inf refused.
    """
    path = Path(path)
    with open_image(path) as im:
        try:
            return _to_rgb(im, f"image {path}")
        except InputError:
            raise
        except Exception as exc:  # a mode Pillow can open but not convert
            raise InputError(f"image {path}: cannot convert its mode {im.mode!r} to RGB "
                             f"({type(exc).__name__}: {exc}); save it as an 8-bit RGB PNG or JPEG") from None


def _to_rgb(im: Any, what: str) -> np.ndarray:
    mode = im.mode
    if mode == "F" or mode.startswith("I"):
        grey = _to_uint8(np.asarray(im), mode, what)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if mode.endswith(("A", "a")) or (mode == "P" and "transparency" in im.info):
        im = im.convert("LA" if mode in ("LA", "La") else "RGBA")  # alpha dropped below, colour kept
        arr = np.asarray(im)
        return np.ascontiguousarray(np.repeat(arr[..., :1], 3, axis=2) if arr.shape[2] == 2 else arr[..., :3])
    return np.asarray(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8).copy()


def _to_uint8(arr: np.ndarray, mode: str, what: str) -> np.ndarray:
    """Greyscale of any depth onto 0..255 by its range, never clipped (see ``load_image``)."""
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"{what}: the float image holds NaN or infinite values; save it without them "
                             "(or as an 8-bit image)")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            return np.round(arr * 255.0).astype(np.uint8)
    else:
        arr = arr.astype(np.int64)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if mode.startswith("I;16") or (lo >= 0 and hi <= 65535):
            return ((arr + 128) // 257).astype(np.uint8)
    if hi == lo:
        return np.full(arr.shape, min(max(round(lo), 0), 255), np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write an image file (format from the extension), atomically: a crash leaves the old file or none."""
    from PIL import Image

    from .outputs import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp)


def load_id_map_png(path: str | Path) -> np.ndarray:
    """An int64 (H, W) id map from a PNG: RGB(A) PNGs use the COCO-panoptic rule
    id = R + 256·G + 256²·B, single-channel ones (8- or 16-bit grey, palette indices) their value.
    Bounded like images (``max_image_pixels``); float and colour-space modes are refused."""
    path = Path(path)
    with open_image(path, "mask file") as im:
        mode = im.mode
        if mode in ("LA", "La", "PA"):
            im = im.getchannel(0)  # the id, without its alpha
        elif mode in ("RGBA", "RGBX", "RGBa"):
            im = im.convert("RGB")
        elif mode not in ("1", "L", "P", "RGB", "I") and not mode.startswith("I;16"):
            raise InputError(f"mask file {path}: a {mode!r} image cannot hold entity ids; write ids as an 8/16-bit "
                             "greyscale PNG or a COCO-panoptic RGB PNG (id = R + 256·G + 256²·B)")
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.int64)
        return arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]
    return arr.astype(np.int64)


def save_id_map_png(path: str | Path, id_map: np.ndarray) -> None:
    """Write an id map as a COCO-panoptic RGB PNG (id = R + 256·G + 256²·B)."""
    id_map = np.asarray(id_map, np.int64)
    rgb = np.stack([id_map % 256, (id_map // 256) % 256, (id_map // 65536) % 256], -1).astype(np.uint8)
    save_image(path, rgb)


def load_masks(path: str | Path, image_size: tuple[int, int] | None = None) -> EntityMasks:
    """Entity masks from a file any segmentation framework can write:

    * ``.json`` — a list of ``{"segmentation": <COCO RLE>, "score"?: float, "id"?: int}`` (COCO
      results style), or ``{"entities": [...]}`` (esgkit's grounding.json; with ``"image_size": [H, W]``
      it may hold no entity);
    * ``.png`` — an id map (0 = no entity; RGB uses id = R + 256·G + 256²·B).

    With ``image_size`` (H, W) masks of another size are refused (naming both) before decoding, and
    an empty list means "no entity" on that image.
    """
    path = Path(path)
    what = f"mask file {path}"
    if not path.is_file():
        problem = "is a folder; give a .json or .png mask file" if path.is_dir() else "no such file"
        raise InputError(f"{what}: {problem}")
    suffix = path.suffix.lower()
    if suffix == ".png":
        masks = EntityMasks.from_id_map(load_id_map_png(path), what=what)
        if not len(masks):
            warnings.warn(f"{what} holds no entity (all pixels are 0)", stacklevel=2)
        if image_size is not None:
            masks.check_image_size(*image_size, what=f"masks in {path}")
        return masks
    if suffix != ".json":
        raise InputError(f"{what}: unsupported extension {path.suffix!r} (use .json with COCO RLE, or .png)")
    data = read_json(path, "mask file")
    items = data.get("entities") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{what}: top level is {kind(data)}; expected a list of {{\"segmentation\": RLE}} objects "
                         "or {\"image_size\": [H, W], \"entities\": [...]}")
    size = image_size
    if isinstance(data, dict) and "image_size" in data:
        size = check_image_size(data["image_size"], what)
        if image_size is not None and tuple(image_size) != size:
            raise InputError(f"{what}: masks are {size[1]}x{size[0]} (WxH) but the image is "
                             f"{image_size[1]}x{image_size[0]}; give masks made for this image")
    if not items and size is None:
        raise InputError(f"{what}: holds no masks, and its image size is unknown "
                         "(an empty result is written as {\"image_size\": [H, W], \"entities\": []})")
    return masks_from_entries(items, what, size)


def save_masks(path: str | Path, masks: EntityMasks) -> None:
    """Write masks as a COCO-results-style RLE JSON that ``load_masks`` reads back (no entity:
    ``{"image_size": [H, W], "entities": []}``, so the image size survives)."""
    from .types import encode_rle

    items = [{"id": int(i), "score": float(s), "segmentation": encode_rle(m)}
             for i, s, m in zip(masks.ids, masks.scores, masks.masks)]
    data: Any = items if items else {"image_size": list(masks.image_size), "entities": []}
    from .outputs import atomic_write

    atomic_write(path, json.dumps(data))
