"""Typed component configs: every section of a YAML config is checked against its component's
``Config`` dataclass, so an unknown key or a wrong type fails at load time naming the full dotted key
(``segmenter.crop_ratio``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, close_matches


def omegaconf_message(exc: OmegaConfBaseException) -> str:
    """The first line of an OmegaConf error (its key is reported separately, in full)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def to_container(section: Any, key: str | None = None) -> dict[str, Any]:
    """A config section as a plain dict; anything but a mapping is an error naming ``key``."""
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)  # type: ignore[return-value]
    if isinstance(section, Mapping):
        return dict(section)
    raise ConfigError(f"must be a mapping like {{name: ..., ...}} (the component's registry name and its options) "
                      f"or just a name; got {describe_type(section)}", key=key)


def describe_type(value: Any) -> str:
    """``a list``, ``a number``… — what a config value is, without quoting it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def validate_dataclass(config_cls: type, values: Mapping[str, Any], key: str) -> Any:
    """Instantiate ``config_cls`` from ``values``, failing on unknown keys and wrong types with the
    full dotted key (``segmenter.crop_ratio``)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for k in values:
        if k not in fields:
            hint = close_matches(str(k), fields)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            allowed = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"unknown key.{extra} Allowed keys: {allowed}", key=f"{key}.{k}")
    try:
        schema = OmegaConf.structured(config_cls)
        merged = OmegaConf.merge(schema, OmegaConf.create(dict(values)))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        sub = getattr(exc, "full_key", None)
        full = f"{key}.{sub}" if sub else key
        raise ConfigError(omegaconf_message(exc), key=full) from exc


__all__ = ["describe_type", "omegaconf_message", "to_container", "validate_dataclass"]
