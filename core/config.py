"""YAML configs (OmegaConf): ``defaults`` inheritance, ``${...}`` interpolation, dot-list overrides,
and typed validation of every component section against its ``Config`` dataclass.

A config names components by registry key only (``segmenter: {name: cropformer, ...}``); nothing in
a config is imported or executed. OmegaConf's YAML loader is a safe loader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .schema import omegaconf_message


def shipped_config_dirs() -> list[Path]:
    """The folders of shipped configs that the loaded plugins declare (``esgkit_config_dirs``)."""
    from .registry import get_registry

    return list(get_registry().config_dirs)


def shipped_configs(search: Iterable[Path] | None = None) -> dict[str, Path]:
    """Shipped config name → file, over ``search`` (default: every plugin's config folders; the
    first folder naming a config wins)."""
    found: dict[str, Path] = {}
    for folder in shipped_config_dirs() if search is None else search:
        for path in sorted(Path(folder).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def resolve_config_path(ref: str | Path, relative_to: Path | None = None,
                        search: Iterable[Path] | None = None) -> Path:
    """A config file from a path, or the name of a shipped config (``gella_tiny`` or ``gella_tiny.yaml``)."""
    candidates = [Path(ref)]
    if relative_to is not None:
        candidates.insert(0, relative_to / ref)
    for c in candidates:
        if c.is_file():
            return c
    shipped = shipped_configs(search)
    name = Path(str(ref)).name
    stem = name.rsplit(".", 1)[0] if name.endswith((".yaml", ".yml")) else name
    if stem in shipped:
        return shipped[stem]
    raise ConfigError(f"config file {str(ref)!r} not found (shipped configs: {', '.join(sorted(shipped))})")


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


def _load_file(path: Path, seen: tuple[Path, ...], search: Iterable[Path] | None) -> DictConfig:
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
        base = resolve_config_path(str(ref), relative_to=path.parent, search=search)
        merged = merge_layer(merged, _load_file(base, (*seen, path.resolve()), search))
    return merge_layer(merged, cfg)


def load_config(ref: str | Path, overrides: Sequence[str] = (), search: Iterable[Path] | None = None,
                sections: Mapping[str, Any] | None = None) -> DictConfig:
    """Load a pipeline config: its ``defaults`` chain, the file, ``sections`` (whole sections that
    replace the file's, e.g. another config's ``segmenter``), then ``key=value`` overrides.

    ``ref`` is a path or the name of a shipped config, looked up in ``search`` (default: the config
    folders of every loaded plugin). Layers merge key by key, except that a layer changing a
    section's ``name`` replaces that section (see ``merge_layer``)."""
    search = None if search is None else list(search)
    path = resolve_config_path(ref, search=search)
    cfg = _load_file(path, (), search)
    for key, section in (sections or {}).items():
        cfg[key] = OmegaConf.create(section)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override {bad[0]!r} is not of the form key=value (e.g. segmenter.name=sam)")
    try:
        cfg = merge_layer(cfg, OmegaConf.from_dotlist(list(overrides)))
        OmegaConf.resolve(cfg)  # interpolation errors surface now, naming the key
    except OmegaConfBaseException as exc:
        raise ConfigError(omegaconf_message(exc), key=_full_key(exc)) from exc
    return cfg  # type: ignore[return-value]


def _full_key(exc: OmegaConfBaseException, prefix: str = "") -> str | None:
    key = getattr(exc, "full_key", None)
    if not key:
        return prefix or None
    return f"{prefix}.{key}" if prefix else str(key)


__all__ = ["load_config", "merge_layer", "resolve_config_path", "shipped_config_dirs", "shipped_configs"]
