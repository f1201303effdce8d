"""A small schema check for the values of untrusted JSON files (ground truth, predictions, masks).

A missing or mistyped field found late is a ``KeyError`` or ``ValueError`` deep inside a metric; checked
when the file is read it is one ``InputError`` naming the file, the entry, the field and what it must be.
Readers describe each entry as ``{key: Field}`` and call ``check_fields``; the evaluators reuse it."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Field:
    """What a value must be: ``expected`` is said in the error, ``ok`` decides."""

    expected: str
    ok: Callable[[Any], bool]


def is_int(value: Any) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A finite real number (numpy's too; not a bool, not NaN or infinity)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def _digits(v: Any) -> bool:
    """An integer, or a string of digits (the official PNG file writes segment ids as strings)."""
    return (is_int(v) and v >= 0) or (isinstance(v, str) and v.isascii() and v.isdigit())


ID = Field("an id (a string or an integer)", lambda v: isinstance(v, str) or is_int(v))
INT = Field("an integer", is_int)
INDEX = Field("an integer ≥ 0", lambda v: is_int(v) and v >= 0)
POSITIVE = Field("an integer > 0", lambda v: is_int(v) and v > 0)
SIZE = Field("a positive integer (pixels)", lambda v: is_int(v) and v > 0)
NUMBER = Field("a finite number", is_number)
TEXT = Field("a string", lambda v: isinstance(v, str))
BOOL = Field("true or false", lambda v: isinstance(v, bool) or v in (0, 1))
LIST = Field("a list", lambda v: isinstance(v, list))
OBJECT = Field("an object", lambda v: isinstance(v, dict))
BOX = Field("[x, y, w, h]: four finite numbers, w and h ≥ 0",
            lambda v: isinstance(v, (list, tuple)) and len(v) == 4 and all(is_number(x) for x in v)
            and v[2] >= 0 and v[3] >= 0)
# only its presence: the content is checked where it is decoded (common.segmentation_to_mask names the entry)
SEGMENTATION = Field("a COCO segmentation", lambda v: True)
SEGMENT_IDS = Field("a list of segment ids (integers)", lambda v: isinstance(v, list) and all(_digits(i) for i in v))
SPANS = Field("a list of [start, end] character spans (integers)",
              lambda v: isinstance(v, list) and all(isinstance(s, list) and len(s) == 2 and all(is_int(i) for i in s)
                                                    for s in v))


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 5, 3, 40, 40


def kind(value: Any) -> str:
    """How an unexpected value is named in a message: ``null``, ``a str ('abc')`` — shown short and
    bounded (``reprlib``: a huge or deeply nested value is never printed in full)."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({_SHORT.repr(value)})"


def shape(value: Any) -> str:
    """What a JSON value is, in a few words (for a file whose top level is of the wrong kind)."""
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:4]) + (", ..." if len(value) > 4 else "")
        return f"an object with keys {keys}" if value else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return kind(value)


def check_fields(entry: Any, where: str, required: Mapping[str, Field],
                 optional: Mapping[str, Field] | None = None) -> dict[str, Any]:
    """``entry`` as a dict holding every ``required`` key with a valid value (``optional`` ones are
    checked when present and not null); else InputError ``"<where>: ..."`` saying what is expected."""
    if not isinstance(entry, dict):
        fields = f" with {', '.join(required)}" if required else ""
        raise InputError(f"{where} is {kind(entry)}, not an object{fields} (see docs/formats.md)")
    missing = [k for k in required if k not in entry]
    if missing:
        raise InputError(f"{where} lacks {', '.join(repr(m) for m in missing)}; it needs "
                         f"{', '.join(required)} (see docs/formats.md)")
    for key, field in required.items():
        if not field.ok(entry[key]):
            raise InputError(f"{where}: {key} must be {field.expected}; got {kind(entry[key])}")
    for key, field in (optional or {}).items():
        if entry.get(key) is not None and not field.ok(entry[key]):
            raise InputError(f"{where}: {key} must be {field.expected}; got {kind(entry[key])}")
    return entry


def check_list(value: Any, where: str, of: str) -> list[Any]:
    """``value`` if it is a JSON list, else InputError ``"<where>: expected a JSON list of <of>"``."""
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a JSON list of {of}; got {shape(value)}")
    return value


__all__ = ["BOOL", "BOX", "Field", "ID", "INDEX", "INT", "LIST", "NUMBER", "OBJECT", "POSITIVE", "SEGMENTATION",
           "SEGMENT_IDS", "SIZE", "SPANS", "TEXT", "check_fields", "check_list", "is_int", "is_number", "kind", "shape"]
