"""Assembling a pipeline from a config: the registry builds every slot, the pipeline wires and
checks them. A config looks like::

    pipeline: {name: colormap}          # the pipeline's own options
    segmenter: {name: ground_truth}     # one section per slot the pipeline declares
    colorizer: {name: random, seed: 0}
    train: {...}                        # optional, reserved: read by `esgkit train` only
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from .config import load_config
from .errors import CompatibilityError, ConfigError, EsgkitError, RegistryError
from .interfaces import Pipeline
from .registry import Registry, get_registry
from .schema import describe_type, to_container, validate_dataclass

RESERVED_SECTIONS = ("train", "eval")
"""Top-level sections that are not pipeline slots: read by ``esgkit train`` / ``esgkit eval``."""


@dataclass
class ValidatedPipelineConfig:
    """A pipeline config checked section by section: the pipeline class, its Config, and for each
    slot the component name and validated Config — nothing constructed yet."""

    cls: type[Pipeline]
    config: Any
    slots: dict[str, tuple[str, str, Any]]  # role → (kind, name, Config instance)
    name: str = ""  # the pipeline's registry name


class UntrainedWeightsWarning(UserWarning):
    """A pipeline was built with random weights for a part that must be trained (an architecture
    preset such as ``gella_tiny``): its results are meaningless. ``esgkit train`` expects it."""


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
    if not isinstance(section, Mapping):
        raise ConfigError(f"must be a mapping like {{name: colormap, ...}} (the pipeline's registry name and its "
                          f"options) or just a name; got {describe_type(section)}", key="pipeline")
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
    return ValidatedPipelineConfig(cls, pipeline_config, slots, name)


def untrained_keys(checked: ValidatedPipelineConfig) -> list[str]:
    """The config keys naming trained weights that are empty: the pipeline's ``weights_key`` and the
    ``checkpoint`` of a segmenter slot (when its Config has one), so those parts get random weights.
    Nothing for a ``meta_device`` build (profiling: it has no weights and cannot run)."""
    if getattr(checked.config, "meta_device", False):
        return []
    keys = [checked.cls.weights_key, *(f"{role}.checkpoint" for role, kind in checked.cls.slots.items() if kind == "segmenter")]
    empty = []
    for key in dict.fromkeys(k for k in keys if k):
        section, _, option = key.partition(".")
        config = checked.config if section == "pipeline" else checked.slots.get(section, ("", "", None))[2]
        if not dataclasses.is_dataclass(config) or option not in {f.name for f in dataclasses.fields(config)}:
            continue
        if not getattr(config, option):
            empty.append(key)
    return empty


def warn_untrained(checked: ValidatedPipelineConfig, source: str = "", trains: bool = False) -> None:
    """One UntrainedWeightsWarning per empty ``untrained_keys`` entry, naming the config ``source``;
    ``trains``: the pipeline is built to be trained, so its own weights (``weights_key``) are expected empty."""
    label = source or "this config"
    for key in untrained_keys(checked):
        if trains and key == checked.cls.weights_key:
            continue
        section = key.partition(".")[0]
        if key == checked.cls.weights_key:
            what = f"the {checked.name or checked.cls.__name__} pipeline" if section == "pipeline" else \
                f"its {section} ({checked.slots[section][1]})"
            instead = f"use {' / '.join(checked.cls.trained_configs)}, " if checked.cls.trained_configs else ""
        else:
            what, instead = f"its {section} ({checked.slots[section][1]})", ""
        warnings.warn(f"{label} builds {what} with random weights (an architecture preset, untrained: {key} is "
                      f"empty): its results are meaningless; {instead}set {key}=FILE, or train it with `esgkit train`",
                      UntrainedWeightsWarning, stacklevel=3)


def build_pipeline(config: DictConfig | dict[str, Any] | str, overrides: list[str] | None = None,
                   registry: Registry | None = None, prebuilt: Mapping[str, Any] | None = None,
                   trains: bool = False) -> Pipeline:
    """Build and check the pipeline a config describes (a path/name, or an already loaded config).
    ``prebuilt``: components by role that stand in for the config's (still validated) sections, e.g.
    a grid cell's segmenter whose masks a stage already stored, so it is never built. ``trains``: built
    for training, which makes the pipeline's own weights: no warning that they are empty."""
    registry = registry or get_registry()
    checked = validate_pipeline_config(config, overrides, registry)
    source = config if isinstance(config, str) else ""
    if getattr(checked.config, "meta_device", False) and not _building_on_meta():
        name = source or "this config"  # refused before allocating: at paper scale that is tens of GB
        raise CompatibilityError(f"{name} is a paper-scale architecture preset without weights (pipeline.meta_device: "
                                 f"true): it cannot run; `esgkit profile {source or 'CONFIG'}` counts its parameters "
                                 "and FLOPs. To run it, set pipeline.meta_device=false and give its trained weights "
                                 "(it needs tens of GB of memory)")
    prebuilt = prebuilt or {}
    unknown = sorted(set(prebuilt) - set(checked.slots))
    if unknown:
        raise ConfigError(f"prebuilt components {unknown} fill no slot of this pipeline "
                          f"(its slots: {sorted(checked.slots)})")
    components = {role: prebuilt[role] if role in prebuilt else registry.create(kind, name, cfg, key=role)
                  for role, (kind, name, cfg) in checked.slots.items()}
    try:
        pipeline = checked.cls.from_components(checked.config, components)
    except EsgkitError:
        raise
    except Exception as exc:
        raise RegistryError(f"assembling pipeline {checked.cls.__name__} failed: {type(exc).__name__}: {exc}") from exc
    pipeline.check()
    warn_untrained(checked, source, trains)
    return pipeline


def with_weights(config: dict[str, Any], weights: str, registry: Registry | None = None) -> dict[str, Any]:
    """A plain ``config`` whose pipeline's ``weights_key`` names ``weights`` instead (what ``esgkit eval
    --checkpoint`` and a training grid cell do); a ConfigError when the pipeline names no weights."""
    registry = registry or get_registry()
    name = str((config.get("pipeline") or {}).get("name", ""))
    key = registry.get("pipeline", name, "pipeline.name").weights_key
    if not key:
        raise ConfigError(f"pipeline {name!r} names no weights that trained ones could replace", key="pipeline.name")
    section, option = key.split(".", 1)
    return {**config, section: {**(config.get(section) or {}), option: str(weights)}}


def _building_on_meta() -> bool:
    """Whether tensors are created on the meta device now (``with torch.device("meta")``)."""
    import torch

    return torch.empty(0).device.type == "meta"


__all__ = ["RESERVED_SECTIONS", "UntrainedWeightsWarning", "ValidatedPipelineConfig", "build_pipeline", "untrained_keys",
           "validate_pipeline_config", "warn_untrained", "with_weights"]
