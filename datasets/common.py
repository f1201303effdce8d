"""Helpers shared by the dataset readers and the evaluators: reading JSON and pickles with errors that
name the file, decoding COCO segmentations, and the lazily checked ``root`` of a dataset."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.errors import InputError


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a missing file or malformed JSON is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path}: malformed JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path}: not a UTF-8 text file ({exc})") from exc


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps runs the C encoder in one go; json.dump to a file streams through the slow Python one
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


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
    """bool (H, W) mask from any COCO segmentation: polygons, uncompressed or compressed RLE."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segm, list):  # polygons
            if not segm:
                return np.zeros((height, width), bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            rle = mask_utils.frPyObjects(segm, *segm["size"])
        elif isinstance(segm, dict) and "counts" in segm:
            counts = segm["counts"]
            rle = {"size": segm["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise TypeError(f"unsupported segmentation {type(segm).__name__}")
        mask = mask_utils.decode(rle).astype(bool)
    except (TypeError, ValueError, KeyError, UnicodeEncodeError) as exc:
        raise InputError(f"{where}: bad segmentation ({type(exc).__name__}: {exc})") from exc
    if mask.shape != (height, width):
        raise InputError(
            f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {width}x{height}"
        )
    return mask


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
