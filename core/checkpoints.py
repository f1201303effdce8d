"""Describing why a state dict does not fit a model, in one wording for every component."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def weights_path(path: str | Path) -> Path:
    """A weights path as given when it exists (or is absolute), else relative to the esgkit package
    root, so a config can name weights shipped inside the package (``pipelines/weights/...``)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    shipped = Path(__file__).resolve().parents[1] / given
    return shipped if shipped.exists() else given


def key_names(keys: list[str], limit: int = 8, quote: bool = False) -> str:
    """``a, b, c … (N in all)``: the first ``limit`` keys of a sorted list (``repr``-quoted if asked)."""
    shown = [repr(k) if quote else k for k in keys[:limit]]
    return ", ".join(shown) + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def key_parts(missing: list[str], unexpected: list[str], limit: int = 8, quote: bool = False) -> list[str]:
    """``["missing keys: …", "unexpected keys: …"]`` (each only when non-empty), keys sorted."""
    parts = []
    if missing:
        parts.append(f"missing keys: {key_names(sorted(missing), limit, quote)}")
    if unexpected:
        parts.append(f"unexpected keys: {key_names(sorted(unexpected), limit, quote)}")
    return parts


def state_mismatch(state: Mapping[str, Any], expected: Mapping[str, Any], limit: int = 8) -> list[str]:
    """The parts of a CheckpointError message for a state dict that does not fit ``expected`` (a
    model's ``state_dict()``): ``missing keys: …``, ``unexpected keys: …``, ``shape mismatch: k found
    (…), expected (…)``. Empty when every key is there with the right shape."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    parts = key_parts(missing, unexpected, limit)
    if wrong:
        parts.append("shape mismatch: " + ", ".join(
            f"{k} found {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:limit]))
    return parts
