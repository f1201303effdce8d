"""The files of a ShapesWorld split, and what ``esgkit data shapesworld`` does when the split is there.

A split is **complete** when ``shapesworld_<split>.json`` (its settings, written last) is there and
no ``.shapesworld_<split>.pending.json`` (written first, removed last) is; it is **partial** when a
run was interrupted (the pending marker, or split files without settings). Writing a split again
(``split_state`` says which case, the command acts):

* absent → written;
* complete with the same settings → nothing to do (``--overwrite`` writes it again);
* complete with other settings → refused; ``--overwrite`` removes it and writes the new one;
* partial with the same settings → resumed: the scenes are drawn again (the annotations need them),
  the image files already there are kept (each was written atomically, so it is whole, and it is the
  same file: same seed, same bytes), the rest are written;
* partial with other settings → removed and written from scratch (an interrupted split is no result).

Several splits share one folder (kind ``data`` of ``esgkit.core.outputs``); only the split's own
files are ever removed. The settings include the generator's ``version`` (``shapesworld.VERSION``,
raised when the files' format changes), so a split of an older format is never mixed with a newer one.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from esgkit.core.json_input import read_state

_NUMBERED = re.compile(r"^\d{12}\.(jpg|png)$")


def pending_name(split: str) -> str:
    """The hidden marker of a split being written."""
    return f".shapesworld_{split}.pending.json"


def annotation_files(out: str | Path, split: str) -> list[Path]:
    """The split's annotation files (what makes the split readable)."""
    out = Path(out)
    ann = out / "annotations"
    refs = [out / f"{prefix}_{split}" / name for prefix in ("refcoco", "refcoco+")
            for name in ("refs(unc).json", "refs(unc).p", "instances.json")]
    return [ann / f"panoptic_{split}.json", ann / f"png_coco_{split}.json", ann / f"captions_{split}.json",
            ann / f"entityseg_{split}.json", *refs]


def split_entries(split: str) -> list[str]:
    """What a split writes, relative to the folder (for the output manifest)."""
    return [split, f"annotations/panoptic_{split}", f"annotations/panoptic_{split}.json",
            f"annotations/png_coco_{split}.json", f"annotations/captions_{split}.json",
            f"annotations/entityseg_{split}.json", f"refcoco_{split}", f"refcoco+_{split}", f"shapesworld_{split}.json"]


def _numbered(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if _NUMBERED.match(p.name)] if folder.is_dir() else []


def split_state(out: str | Path, split: str, meta: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(state, recorded settings)``; state: ``absent``, ``complete`` (same settings), ``different``
    (complete, other settings), ``partial`` (interrupted, same settings), ``partial-different``."""
    out, meta = Path(out), json.loads(json.dumps(meta))  # compared as JSON reads it back (tuples → lists)
    done, pending = read_state(out / f"shapesworld_{split}.json"), read_state(out / pending_name(split))
    if pending is not None:
        return ("partial" if pending == meta else "partial-different"), pending
    if done is not None:
        whole = all(p.is_file() for p in annotation_files(out, split))
        if done != meta:
            return "different", done
        return ("complete" if whole else "partial"), done
    there = any(p.exists() for p in annotation_files(out, split)) or _numbered(out / split) \
        or _numbered(out / "annotations" / f"panoptic_{split}")
    return ("partial-different" if there else "absent"), None


def remove_split(out: str | Path, split: str) -> None:
    """Remove the split's files: its settings and annotations first (so no half-removed split looks
    complete), then its numbered image and id-map files; folders left empty go too."""
    out = Path(out)
    (out / f"shapesworld_{split}.json").unlink(missing_ok=True)
    for path in annotation_files(out, split):
        path.unlink(missing_ok=True)
    for folder in (out / split, out / "annotations" / f"panoptic_{split}"):
        for path in _numbered(folder):
            path.unlink()
    for folder in (out / split, out / "annotations" / f"panoptic_{split}", out / f"refcoco_{split}",
                   out / f"refcoco+_{split}"):
        with contextlib.suppress(OSError):
            folder.rmdir()
    (out / pending_name(split)).unlink(missing_ok=True)


def describe(meta: dict[str, Any]) -> str:
    """``seed 1, 200 images, 512x512, jpg, format 2``: the settings a user gives on the command line,
    and the generator's file-format version (a split of an older format is a different one)."""
    return (f"seed {meta.get('seed')}, {meta.get('images')} images, {meta.get('width')}x{meta.get('height')}, "
            f"{meta.get('image_format')}, format {meta.get('version')}")


__all__ = ["annotation_files", "describe", "pending_name", "remove_split", "split_entries", "split_state"]
