"""Reading JSON files that come from outside (prediction, ground-truth, mask and grounding files):
bounded in size, UTF-8 only, and every failure an InputError naming the file. Kept apart from
``esgkit.core.io`` (which re-exports it) so ``esgkit.core.types`` can use it without an import cycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError
from .limits import limits, raise_hint


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file that may be hostile: a missing file, malformed or non-UTF-8 JSON, a file
    over ``max_json_mb`` or nested too deeply is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    size, bound = path.stat().st_size, limits().max_json_mb
    if size > bound * 2**20:
        raise InputError(f"{what} {path}: {size / 2**20:,.0f} MiB exceeds the JSON size limit of {bound:,} MiB "
                         f"(max_json_mb); {raise_hint('max_json_mb')}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path}: malformed JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path}: not a UTF-8 text file ({exc})") from exc
    except RecursionError:
        raise InputError(f"{what} {path}: JSON nested too deeply to be a real {what}") from None
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from exc


def read_state(path: str | Path) -> dict[str, Any] | None:
    """One of esgkit's own small state files (an output manifest, a cell's status, a split's settings) as
    a dict; None when it is missing, unreadable, damaged (a crash) or not a JSON object: the caller then
    treats the state as unknown, never as an error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


__all__ = ["read_json", "read_state"]
