"""Resource bounds on untrusted input, stated in one place and configurable.

A legal-looking file can still ask for unbounded work: a decompression-bomb PNG, an RLE that claims
a 100000² mask, an id map whose every pixel is its own entity, a JSON file of many gigabytes. Every
reader checks these bounds *before* allocating, and says which limit was hit and how to raise it.

Each limit reads an environment variable (``ESGKIT_MAX_IMAGE_PIXELS`` …) and the ``esgkit`` command
line sets the same from ``--max-image-pixels`` etc. (see ``esgkit --help``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import InputError


@dataclass(frozen=True)
class Limits:
    """The bounds in force. Defaults fit a 16384² image and a few thousand entities."""

    max_image_pixels: int = 16384 * 16384
    """Largest image (H·W) any reader decodes: Pillow's bomb guard becomes this clear limit."""
    max_entities: int = 4096
    """Most entities (masks, id-map segments) one image may hold."""
    max_json_mb: int = 2048
    """Largest JSON (prediction, ground-truth, mask) file read, in MiB."""
    max_masks_mb: int = 4096
    """Largest stack of one image's entity masks (N·H·W bytes, one byte a pixel) built from a file, in
    MiB: legal counts and sizes can still multiply past the memory (4096 entities of 1024²)."""

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for f in fields(cls):
            var = env_name(f.name)
            raw = os.environ.get(var)
            if raw is None or raw == "":
                continue
            values[f.name] = parse_limit(raw, f"environment variable {var}={raw!r}")
        return cls(**values)


def parse_limit(raw: str, where: str) -> int:
    """A limit's value: a positive number (``1e9`` allowed), else InputError naming ``where``."""
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise InputError(f"{where}: expected a positive number") from None
    if value <= 0:
        raise InputError(f"{where}: expected a positive number")
    return value


def env_name(field: str) -> str:
    """``max_image_pixels`` → ``ESGKIT_MAX_IMAGE_PIXELS``."""
    return f"ESGKIT_{field.upper()}"


def flag_name(field: str) -> str:
    """``max_image_pixels`` → ``--max-image-pixels``."""
    return "--" + field.replace("_", "-")


def limits() -> Limits:
    """The limits in force now (read from the environment on each call: cheap, and tests can patch it)."""
    return Limits.from_env()


def raise_hint(field: str) -> str:
    """How the user raises one limit, for error messages."""
    return f"raise it with {flag_name(field)} N or {env_name(field)}=N if the input is trusted"


def check_pixels(height: int, width: int, what: str) -> None:
    """InputError when an image or mask of ``height × width`` is negative, zero-sided or too large."""
    if not (isinstance(height, int) and isinstance(width, int)) or height < 0 or width < 0:
        raise InputError(f"{what}: size {width}x{height} (WxH) is not a valid image size")
    bound = limits().max_image_pixels
    if height * width > bound:
        raise InputError(f"{what}: {width}x{height} = {height * width:,} pixels exceeds the limit of {bound:,} "
                         f"(max_image_pixels); {raise_hint('max_image_pixels')}")


def check_entities(count: int, what: str) -> None:
    """InputError when one image holds more entities than ``max_entities``."""
    bound = limits().max_entities
    if count > bound:
        raise InputError(f"{what}: {count:,} entities exceed the limit of {bound:,} (max_entities) — is it really "
                         f"an entity file (not a photo or a dense label map)? {raise_hint('max_entities')}")


def check_mask_stack(count: int, height: int, width: int, what: str) -> None:
    """InputError when ``count`` masks of ``height × width`` would take more than ``max_masks_mb``."""
    bound, size = limits().max_masks_mb, count * height * width
    if size > bound * 2**20:
        raise InputError(f"{what}: {count:,} masks of {width}x{height} need {size / 2**20:,.0f} MiB, over the limit of "
                         f"{bound:,} MiB (max_masks_mb); {raise_hint('max_masks_mb')}")


__all__ = ["Limits", "check_entities", "check_mask_stack", "check_pixels", "env_name", "flag_name", "limits", "parse_limit", "raise_hint"]
