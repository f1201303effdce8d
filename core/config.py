"""YAML configs (OmegaConf): ``defaults`` inheritance, ``${...}`` interpolation, dot-list overrides,
and typed validation of every component section against its ``Config`` dataclass.

A config names components by registry key only (``segmenter: {name: cropformer, ...}``); nothing in
a config is imported or executed. OmegaConf's YAML loader is a safe loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

if TYPE_CHECKING:
    from .registry import Registry

PACKAGED_CONFIGS = "esgkit.pipelines"  # configs/ inside this package


def packaged_config_dir() -> Path:
    """The folder holding the shipped pipeline configs (``pipelines/configs``)."""
    return Path(str(resources.files(PACKAGED_CONFIGS).joinpath("configs")))


def resolve_config_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """A config file from a path, or the name of a shipped config (``gella_tiny`` or ``gella_tiny.yaml``)."""
    candidates = [Path(ref)]
    if relative_to is not None:
        candidates.insert(0, relative_to / ref)
    name = str(ref) if str(ref).endswith((".yaml", ".yml")) else f"{ref}.yaml"
    candidates.append(packaged_config_dir() / Path(name).name)
    for c in candidates:
        if c.is_file():
            return c
    shipped = sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))
    raise ConfigError(f"config file {str(ref)!r} not found (shipped configs: {', '.join(shipped)})")


def merge_layer(base: DictConfig, layer: DictConfig) -> DictConfig:
    """Merge ``layer`` over ``base``. A top-level section whose ``name`` the layer changes is
    replaced, not merged: swapping ``segmenter.name=sam`` must not keep CropFormer's options."""
    base = base.copy()
    for key in list(layer.keys()):
        old, new = base.get(key), layer.get(key)
        if (isinstance(old, DictConfig) and isinstance(new, DictConfig) and "name" in new
                and "name" in old and old.get("name") != new.get("name")):
            base.pop(key)
    return OmegaConf.merge(base, layer)  # type: ignore[return-value]


def _load_file(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"config defaults form a cycle: {chain}")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, Exception) as exc:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: not a valid YAML config ({type(exc).__name__}: {exc})") from exc
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    defaults = cfg.pop("defaults", [])
    if isinstance(defaults, (str,)):
        defaults = [defaults]
    if not isinstance(defaults, (ListConfig, list)):
        raise ConfigError("defaults: must be a list of config files", key="defaults")
    merged = OmegaConf.create({})
    for ref in defaults:
        base = resolve_config_path(str(ref), relative_to=path.parent)
        merged = merge_layer(merged, _load_file(base, (*seen, path.resolve())))
    return merge_layer(merged, cfg)


def load_config(ref: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a pipeline config: its ``defaults`` chain, the file, then ``key=value`` overrides.

    Layers merge key by key, except that a layer changing a section's ``name`` replaces that
    section (see ``merge_layer``)."""
    path = resolve_config_path(ref)
    cfg = _load_file(path, ())
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override {bad[0]!r} is not of the form key=value (e.g. segmenter.name=sam)")
    try:
        cfg = merge_layer(cfg, OmegaConf.from_dotlist(list(overrides)))
        OmegaConf.resolve(cfg)  # interpolation errors surface now, naming the key
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{_omegaconf_message(exc)}", key=_full_key(exc)) from exc
    return cfg  # type: ignore[return-value]


def _full_key(exc: OmegaConfBaseException, prefix: str = "") -> str | None:
    key = getattr(exc, "full_key", None)
    if not key:
        return prefix or None
    return f"{prefix}.{key}" if prefix else str(key)


def _omegaconf_message(exc: OmegaConfBaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg


def to_container(section: Any) -> dict[str, Any]:
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)  # type: ignore[return-value]
    if isinstance(section, Mapping):
        return dict(section)
    raise ConfigError(f"must be a mapping like {{name: ..., ...}}; got {type(section).__name__}")


def validate_dataclass(config_cls: type, values: Mapping[str, Any], key: str) -> Any:
    """Instantiate ``config_cls`` from ``values``, failing on unknown keys and wrong types with the
    full dotted key (``segmenter.crop_ratio``)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for k in values:
        if k not in fields:
            from .errors import close_matches

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
        raise ConfigError(_omegaconf_message(exc), key=full) from exc


def component_config(registry: Registry, kind: str, section: Any, key: str) -> tuple[str, Any]:
    """Split ``{name: ..., **options}`` into the name and a validated ``Config`` instance."""
    if isinstance(section, str):
        section = {"name": section}
    values = to_container(section) if section is not None else {}
    if "name" not in values:
        raise ConfigError(f"missing 'name' of the {kind} (run `esgkit list {kind}`)", key=f"{key}.name")
    name = values.pop("name")
    cls = registry.get(kind, str(name), f"{key}.name")
    return str(name), validate_dataclass(cls.Config, values, key)
