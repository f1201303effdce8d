"""Assembling a pipeline from a config: the registry builds every slot, the pipeline wires and
checks them. A config looks like::

    pipeline: {name: colormap}          # the pipeline's own options
    segmenter: {name: ground_truth}     # one section per slot the pipeline declares
    colorizer: {name: random, seed: 0}
    train: {...}                        # optional, reserved: read by `esgkit train` only
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from .config import load_config
from .errors import ConfigError, EsgkitError, RegistryError
from .interfaces import Pipeline
from .registry import Registry, get_registry
from .schema import to_container, validate_dataclass

RESERVED_SECTIONS = ("train", "eval")
"""Top-level sections that are not pipeline slots: read by ``esgkit train`` / ``esgkit eval``."""


@dataclass
class ValidatedPipelineConfig:
    """A pipeline config checked section by section: the pipeline class, its Config, and for each
    slot the component name and validated Config — nothing constructed yet."""

    cls: type[Pipeline]
    config: Any
    slots: dict[str, tuple[str, str, Any]]  # role → (kind, name, Config instance)


def validate_pipeline_config(config: DictConfig | dict[str, Any] | str, overrides: list[str] | None = None,
                             registry: Registry | None = None) -> ValidatedPipelineConfig:
    """Check every section of a pipeline config against the registry and the components' typed
    configs, so a bad key fails before any model is built."""
    registry = registry or get_registry()
    if isinstance(config, str):
        config = load_config(config, overrides or [])
    values = to_container(config)
    for section_name in RESERVED_SECTIONS:
        values.pop(section_name, None)
    if "pipeline" not in values:
        raise ConfigError("missing 'pipeline' section naming the pipeline (run `esgkit list pipeline`)", key="pipeline")
    section = values.pop("pipeline")
    if isinstance(section, str):
        section = {"name": section}
    section = dict(section)
    if "name" not in section:
        raise ConfigError("missing pipeline name", key="pipeline.name")
    name = str(section.pop("name"))
    cls = registry.get("pipeline", name, "pipeline.name")
    assert issubclass(cls, Pipeline)
    unknown = [k for k in values if k not in cls.slots]
    if unknown:
        slots = ", ".join(cls.slots) or "(none)"
        raise ConfigError(f"not a slot of pipeline {name!r} (slots: {slots})", key=unknown[0])
    pipeline_config = validate_dataclass(cls.Config, section, "pipeline")
    slots = {}
    for role, kind in cls.slots.items():
        if role not in values:
            raise ConfigError(f"pipeline {name!r} needs a {kind} here (run `esgkit list {kind}`)", key=role)
        component_name, component_config = registry.validated(kind, values[role], role)
        slots[role] = (kind, component_name, component_config)
    return ValidatedPipelineConfig(cls, pipeline_config, slots)


def build_pipeline(config: DictConfig | dict[str, Any] | str, overrides: list[str] | None = None,
                   registry: Registry | None = None) -> Pipeline:
    """Build and check the pipeline a config describes (a path/name, or an already loaded config)."""
    registry = registry or get_registry()
    checked = validate_pipeline_config(config, overrides, registry)
    components = {role: registry.create(kind, name, cfg, key=role) for role, (kind, name, cfg) in checked.slots.items()}
    try:
        pipeline = checked.cls.from_components(checked.config, components)
    except EsgkitError:
        raise
    except Exception as exc:
        raise RegistryError(f"assembling pipeline {checked.cls.__name__} failed: {type(exc).__name__}: {exc}") from exc
    pipeline.check()
    return pipeline


__all__ = ["RESERVED_SECTIONS", "ValidatedPipelineConfig", "build_pipeline", "validate_pipeline_config"]
