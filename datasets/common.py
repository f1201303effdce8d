"""Helpers shared by the dataset readers and the evaluators: reading pickles with errors that
name the file, decoding COCO segmentations, and the lazily checked ``root`` of a dataset."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.errors import InputError
from esgkit.core.fields import ID, SIZE, TEXT, check_fields, check_list, is_number, kind
from esgkit.core.limits import check_pixels
from esgkit.core.types import check_image_size, decode_rle


IMAGE = {"id": ID, "height": SIZE, "width": SIZE}
"""What a COCO ``images`` entry must hold (``file_name``, a string, is optional)."""


def index_images(images: Any, where: str, unique_ids: bool = False) -> dict[str, dict[str, Any]]:
    """A COCO ``images`` list by id (as a string), every entry checked (``IMAGE``) and its size within
    ``max_image_pixels``; with ``unique_ids`` a repeated id is an error (else the last one counts)."""
    out: dict[str, dict[str, Any]] = {}
    for k, info in enumerate(check_list(images, f"{where}: 'images'", "{id, height, width} objects")):
        check_fields(info, f"{where}: image {k}", IMAGE, {"file_name": TEXT})
        check_pixels(info["height"], info["width"], f"{where}: image {info['id']}")
        if unique_ids and str(info["id"]) in out:
            raise InputError(f"{where}: image {k} repeats id {info['id']}; image ids must be unique")
        out[str(info["id"])] = info
    return out

def write_json(path: str | Path, data: Any) -> None:
    """Compact JSON, written atomically (a crash leaves the old file or none, never a torn one)."""
    from esgkit.core.outputs import atomic_write

    # json.dumps runs the C encoder in one go; json.dump to a file streams through the slow Python one
    atomic_write(path, json.dumps(data, separators=(",", ":")))


class NotPlainData(pickle.UnpicklingError):
    """A pickle asked for a global (a class or function): not plain data."""


class PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data (dict, list, tuple, str, bytes, numbers, bool, None).

    Those types have their own pickle opcodes; anything else needs ``find_class``, which refuses
    every global, so a malicious or foreign pickle cannot run code or build objects."""

    def find_class(self, module: str, name: str) -> Any:
        raise NotPlainData(f"it holds a {module}.{name} object; only plain data is allowed")


def read_plain_pickle(path: str | Path, what: str = "pickle") -> Any:
    """Load a pickle that must hold only plain data (e.g. RefCOCO's ``refs(unc).p``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    data = path.read_bytes()
    try:
        # latin1 lets Python-2 pickles (the official refs files) load their byte strings as text
        return PlainDataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except NotPlainData as exc:
        raise InputError(f"{what} {path}: refused to load: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise InputError(f"{what} {path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def segmentation_to_mask(segm: Any, height: int, width: int, where: str) -> np.ndarray:
    """bool (H, W) mask from any COCO segmentation: polygons ``[[x1, y1, ...], ...]``, an RLE dict
    (compressed or uncompressed counts), or a list of RLE dicts (RefCOCO's ``refer.py`` reads ``[RLE]``;
    several are their union). Checked before pycocotools sees it (it trusts its input): every RLE by
    ``check_rle`` (its size must be the image's), polygons by ``check_polygons``."""
    size = check_image_size([height, width], where)
    if isinstance(segm, dict):
        return decode_rle(segm, where, size)
    if not isinstance(segm, list):
        raise InputError(f"{where}: segmentation is {kind(segm)}; expected polygons [[x, y, ...], ...], "
                         "a COCO RLE {\"size\": [H, W], \"counts\": ...} or a list of RLEs")
    if not segm:
        return np.zeros(size, bool)
    if any(isinstance(part, dict) for part in segm):
        mask = np.zeros(size, bool)
        for k, part in enumerate(segm):
            if not isinstance(part, dict):
                raise InputError(f"{where}: segmentation mixes RLEs and {kind(part)} (item {k}); give either "
                                 "polygons [[x, y, ...], ...] or RLEs [{\"size\": [H, W], \"counts\": ...}, ...]")
            mask |= decode_rle(part, f"{where} RLE {k}", size)
        return mask
    check_polygons(segm, height, width, where)
    from pycocotools import mask as mask_utils

    polygons = [[float(v) for v in poly] for poly in segm]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def exact_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons (pixel-corner coordinates) that pycocotools rasterises back to exactly the bool
    (H, W) ``mask``, or None when no such outline exists: COCO unions its polygons, so a mask with a
    hole cannot be drawn with them (nor an empty one). The outline runs through the midpoints of the
    mask's boundary pixel edges (``find_contours`` at 0.5), only collinear points dropped, and is
    checked by rasterising it."""
    from pycocotools import mask as mask_utils
    from skimage.measure import find_contours

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    r0, c0 = int(rows[0]), int(cols[0])
    crop = mask[r0:rows[-1] + 1, c0:cols[-1] + 1]
    outlines = []  # in crop coordinates: pixel k spans [k, k + 1], as in COCO
    for contour in find_contours(np.pad(crop, 1).astype(np.float32), 0.5):  # closed: the crop is padded
        corners = _drop_collinear(contour[:-1, ::-1] - 0.5)  # (row, col) of padded pixel centres → (x, y)
        if len(corners) >= 3:
            outlines.append(corners)
    if not outlines:
        return None
    # checked on the crop: the outlines stay inside it, so nothing outside is drawn
    drawn = mask_utils.merge(mask_utils.frPyObjects([o.ravel().tolist() for o in outlines], *crop.shape))
    if drawn["counts"] != mask_utils.encode(np.asfortranarray(crop, np.uint8))["counts"]:
        return None
    return [[float(v) for v in (o + [c0, r0]).ravel()] for o in outlines]


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    """The corners of a closed outline: points in a straight run between their neighbours go (exact:
    the contour points lie on a half-pixel grid). Vectorised, unlike skimage's ``approximate_polygon``."""
    before, after = points - np.roll(points, 1, axis=0), np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    straight = (cross == 0) & ((before * after).sum(axis=1) > 0)
    return points[~straight]


def check_polygons(polygons: list, height: int, width: int, where: str) -> None:
    """InputError unless every polygon is a flat list of an even number (≥ 6) of finite numbers
    within one image size of the image (pycocotools rasterises far-away or huge points into
    unbounded memory)."""
    perimeter = 0.0
    for k, poly in enumerate(polygons):
        if not (isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(is_number(v) for v in poly)):
            raise InputError(f"{where}: polygon {k} is {kind(poly)}; expected [x1, y1, x2, y2, x3, y3, ...], "
                             "an even number (at least 6) of finite numbers")
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        if (np.abs(xy - [width / 2, height / 2]) > [1.5 * width, 1.5 * height]).any():
            raise InputError(f"{where}: polygon {k} has points far outside the {width}x{height} (WxH) image; "
                             "it was made for another image")
        perimeter += float(np.abs(xy - np.roll(xy, 1, axis=0)).max(axis=1).sum())  # what pycocotools rasterises
    if perimeter > 4 * height * width + 4 * (height + width):
        raise InputError(f"{where}: polygons {perimeter:,.0f} pixels long cannot outline a {width}x{height} image")


def resolve_root(root: str, name: str) -> Path:
    """The dataset folder, checked when data is first read (so a default config still builds)."""
    if not root:
        raise InputError(f"dataset {name}: no root given; set root=<folder of the dataset>")
    path = Path(root)
    if not path.is_dir():
        raise InputError(f"dataset {name}: root {path} is not a folder")
    return path


def dataset_file(root: str, name: str, explicit: str, candidates: list[str], what: str) -> Path:
    """An explicitly configured path, else the first of ``candidates`` under the dataset root."""
    if explicit:
        return find_file([Path(explicit)], what)
    base = resolve_root(root, name)
    return find_file([base / c for c in candidates], what)


def find_file(candidates: list[Path], what: str) -> Path:
    """The first existing path among ``candidates``; else an InputError listing where it looked."""
    for c in candidates:
        if c.exists():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(f"{what} not found (looked for: {tried})")
