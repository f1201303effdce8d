"""YAML configs (OmegaConf): ``defaults`` inheritance, ``${...}`` interpolation, dot-list overrides,
and typed validation of every component section against its ``Config`` dataclass.

A config names components by registry key only (``segmenter: {name: cropformer, ...}``); nothing in
a config is imported or executed. OmegaConf's YAML loader is a safe loader.

Configs are treated as untrusted input (see ``config_guard``): a ``defaults`` entry reads only a
shipped config, a ``.yaml``/``.yml`` file under the folder of the config naming it, or one in a
folder of the search path (``search=``, ``$ESGKIT_CONFIG_PATH``); ``${oc.env:VAR}`` reads only the
variables ``$ESGKIT_CONFIG_ENV`` lists; files, nesting, aliases and interpolation expansion are
bounded; and no error message quotes a line of a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (GrammarParseError, InterpolationKeyError, InterpolationResolutionError,
                              OmegaConfBaseException, UnsupportedInterpolationType)

from . import config_guard as guard
from .errors import ConfigError, EsgkitError
from .schema import omegaconf_message

CONFIG_PATH_VAR = "ESGKIT_CONFIG_PATH"
"""Folders (``os.pathsep``-separated) searched for config names and ``defaults`` entries."""
CONFIG_SUFFIXES = (".yaml", ".yml")


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


def search_path(search: Iterable[Path] | None = None) -> list[Path]:
    """Folders searched for config names and ``defaults`` entries besides the shipped ones: ``search``
    (``load_config(search=...)``), then ``$ESGKIT_CONFIG_PATH``."""
    env = [Path(p) for p in os.environ.get(CONFIG_PATH_VAR, "").split(os.pathsep) if p.strip()]
    return [*(Path(p) for p in (search or ())), *env]


def _by_name(ref: str, search: Iterable[Path] | None) -> Path | None:
    """The config named ``ref`` (``gella_tiny`` or ``gella_tiny.yaml``): in ``search``/``$ESGKIT_CONFIG_PATH``,
    then among the shipped configs (only in ``search`` when it is given)."""
    name = Path(ref).name
    if not name:
        return None
    stem = name.rsplit(".", 1)[0] if name.endswith(CONFIG_SUFFIXES) else name
    for folder in search_path(search):
        for suffix in CONFIG_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return shipped_configs(search).get(stem)


def resolve_config_path(ref: str | Path, relative_to: Path | None = None,
                        search: Iterable[Path] | None = None) -> Path:
    """The config the user names: any path (they chose it), or the name of a config in the search
    path or a shipped one (``gella_tiny`` or ``gella_tiny.yaml``). ``relative_to`` is tried first.
    ``defaults`` entries inside configs are resolved more strictly (``resolve_default``)."""
    search = None if search is None else list(search)
    candidates = [Path(ref)] if relative_to is None else [relative_to / ref, Path(ref)]
    for c in candidates:
        if c.is_file():
            return c
    named = _by_name(str(ref), search)
    if named is not None:
        return named
    for c in candidates:
        if os.path.lexists(c):
            return c  # a folder or special file: read_config_text says what is wrong with it
    shipped = shipped_configs(search)
    raise ConfigError(f"config file {str(ref)!r} not found (shipped configs: {', '.join(sorted(shipped))})")


def resolve_default(ref: Any, config: Path, search: Iterable[Path] | None = None) -> Path:
    """The file a ``defaults`` entry of ``config`` names, only from where defaults may come: a shipped
    config name, a ``.yaml``/``.yml`` file under ``config``'s folder, or one under a search-path folder —
    the resolved path (symlinks followed), so ``..`` and links cannot leave those folders."""
    folder = config.resolve().parent
    where = (f"A defaults entry may be a shipped config name (esgkit config list), a .yaml/.yml file in {folder} "
             f"or below, or one in a folder of {CONFIG_PATH_VAR} ({os.pathsep}-separated folders)")
    if not isinstance(ref, str) or not ref.strip() or "\0" in ref:
        raise ConfigError(f"{config}: defaults entries must be config names or relative file paths; "
                          f"got {type(ref).__name__ if not isinstance(ref, str) else repr(ref[:80])}. {where}")
    problem = "not found"
    names = [ref] if ref.endswith(CONFIG_SUFFIXES) else [ref, *(ref + s for s in CONFIG_SUFFIXES)]
    for root in [folder, *search_path(search)]:
        try:
            root = root.resolve()
            for name in names:
                candidate = root / name
                if not os.path.lexists(candidate):
                    continue
                real = candidate.resolve()
                if not real.is_relative_to(root):
                    problem = "points outside the folders defaults may come from"
                elif real.suffix not in CONFIG_SUFFIXES:
                    problem = "is not a .yaml/.yml file"
                elif real.is_file():
                    return real
                else:
                    problem = "is not a regular file"
        except (OSError, RuntimeError, ValueError):  # unreadable folders, symlink loops
            problem = "cannot be resolved"
    named = _by_name(ref, search) if "/" not in ref and "\\" not in ref else None
    if named is not None and named.is_file():
        return named
    raise ConfigError(f"{config}: defaults entry {ref[:80]!r} {problem}. {where}")


def merge_layer(base: DictConfig, layer: DictConfig) -> DictConfig:
    """Merge ``layer`` over ``base``. A top-level section whose ``name`` the layer changes is
    replaced, not merged: swapping ``segmenter.name=sam`` must not keep CropFormer's options; so is
    a value of another shape (a list or a bare name over a mapping). Any other mapping merges key by key (a ``key={a: 1}`` override adds ``a`` to ``key``; delete the
    key first, ``~key``, to replace it). Names are compared unresolved (``${...}`` as written)."""
    base = base.copy()
    for key in list(layer.keys()):
        if key not in base.keys():  # `key in base` would resolve the value
            continue
        old, new = _raw(base, key), _raw(layer, key)
        renamed = isinstance(old, dict) and isinstance(new, dict) and "name" in new and "name" in old \
            and old.get("name") != new.get("name")
        if renamed or _shape(old) != _shape(new):  # a list or a bare name over a mapping: the layer's value wins
            base.pop(key)
    return OmegaConf.merge(base, layer)  # type: ignore[return-value]


def _raw(cfg: DictConfig, key: Any) -> Any:
    """The value at ``key`` as plain Python, nothing resolved."""
    node = cfg._get_node(key)
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False)
    return node._value() if node is not None else None  # type: ignore[union-attr]


def _shape(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "value"


def _load_file(path: Path, seen: tuple[Path, ...], search: Iterable[Path] | None) -> DictConfig:
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"config defaults form a cycle: {chain}")
    obj = guard.parse_yaml(guard.read_config_text(path), str(path))
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level (sections such as "
                          f"pipeline: {{name: ...}}); this file holds a {type(obj).__name__}")
    defaults = obj.pop("defaults", None) or []
    try:
        cfg = OmegaConf.create(obj)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: not a valid config: {_unquoted(exc)}", key=_full_key(exc)) from None
    except (RecursionError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a valid config ({type(exc).__name__})") from None
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list):
        raise ConfigError(f"{path}: defaults must be a list of config names or files, e.g. defaults: [colormap]",
                          key="defaults")
    merged = OmegaConf.create({})
    for ref in defaults:
        base = resolve_default(ref, path, search)
        merged = _merge(merged, _load_file(base, (*seen, path.resolve()), search), path)
    return _merge(merged, cfg, path)


def _merge(base: DictConfig, layer: DictConfig, path: Path | str) -> DictConfig:
    try:
        return merge_layer(base, layer)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: cannot be merged over its defaults: {omegaconf_message(exc)}",
                          key=_full_key(exc)) from None


def section_of(ref: str | Path, key: str, option: str) -> dict[str, Any]:
    """Config ``ref``'s whole ``key`` section, to swap into another config with ``load_config(...,
    sections=...)`` — what ``--segmenter CONFIG`` does (``option`` names the flag in the error)."""
    from .schema import to_container

    section = to_container(load_config(ref)).get(key)
    if not section:
        raise ConfigError(f"config {str(ref)!r} has no {key} section", key=option)
    return section


def load_config(ref: str | Path, overrides: Sequence[str] = (), search: Iterable[Path] | None = None,
                sections: Mapping[str, Any] | None = None) -> DictConfig:
    """Load a pipeline config: its ``defaults`` chain, the file, ``sections`` (whole sections that
    replace the file's, e.g. another config's ``segmenter``), then overrides, then resolve ``${...}``.

    ``ref`` is a path or the name of a config in ``search`` / ``$ESGKIT_CONFIG_PATH`` or a shipped one
    (default: the config folders of every loaded plugin). Layers merge key by key, except that a layer
    changing a section's ``name`` replaces that section (see ``merge_layer``).

    Overrides are ``key=value`` (the value is YAML) or ``~key`` (``~key=`` too), which deletes the key
    first. A mapping value merges into the mapping already there — ``train.subtasks={a: 1}`` adds
    ``a`` and keeps the other entries; to replace it, delete it as well:
    ``~train.subtasks 'train.subtasks={a: 1}'`` (deletions apply before every ``key=value``).

    ``${oc.env:VAR}`` reads only variables named in ``$ESGKIT_CONFIG_ENV`` (comma-separated); the
    check is a resolver swapped in while this function runs (``config_guard.guarded_resolvers``)."""
    search = None if search is None else list(search)
    deletions, sets = guard.parse_overrides(list(overrides))
    with guard.guarded_resolvers():
        path = resolve_config_path(ref, search=search)
        cfg = _load_file(path, (), search)
        try:
            for key, section in (sections or {}).items():
                cfg[key] = OmegaConf.create(section)
            cfg = guard.delete_keys(cfg, deletions)
            cfg = merge_layer(cfg, OmegaConf.from_dotlist(sets))
            guard.check_expansion(cfg)
            OmegaConf.resolve(cfg)  # interpolation errors surface now, naming the key
            return guard.escape_literals(cfg)
        except EsgkitError:
            raise
        except OmegaConfBaseException as exc:
            raise _config_error(exc) from None
        except RecursionError:
            raise ConfigError("interpolations nest too deeply to resolve; reference values directly") from None
        except Exception as exc:  # yaml errors in an override value, and the like
            raise ConfigError(f"overrides cannot be applied ({type(exc).__name__}: {_unquoted(exc)})") from None


def _config_error(exc: OmegaConfBaseException) -> ConfigError:
    """A ConfigError for an OmegaConf error, naming the key and saying what to do."""
    key = _full_key(exc)
    cause = guard.esgkit_cause(exc)
    if cause is not None:  # raised by a guarded resolver
        return ConfigError(str(cause), key=key)
    first = omegaconf_message(exc)
    if isinstance(exc, UnsupportedInterpolationType):
        return ConfigError(f"{first}: no resolver of that name is registered. Configs may use ${{key}} references "
                           f"and {', '.join(guard.BUILTIN_RESOLVERS)}, oc.env (variables listed in "
                           f"{guard.ENV_ALLOW_VAR}), oc.decode, and resolvers registered in Python with "
                           "OmegaConf.register_resolver", key=key)
    if isinstance(exc, InterpolationKeyError):
        return ConfigError(f"{first}: the interpolation refers to a key that does not exist; fix the reference "
                           "or define the key", key=key)
    if isinstance(exc, InterpolationResolutionError) and "ecursive interpolation" in first:
        return ConfigError("recursive interpolation: this value refers back to itself (directly or through other "
                           "keys); make one of them a plain value", key=key)
    if isinstance(exc, GrammarParseError):
        return ConfigError("not a valid ${...} interpolation; write a literal '${' as '\\${'", key=key)
    return ConfigError(first, key=key)


def _unquoted(exc: BaseException) -> str:
    """The first line of an error message, quoted text removed (it may be text from a file)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return " ".join(guard._QUOTED.sub("", first).split())[:160] or type(exc).__name__


def _full_key(exc: OmegaConfBaseException, prefix: str = "") -> str | None:
    key = getattr(exc, "full_key", None)
    if not key:
        return prefix or None
    return f"{prefix}.{key}" if prefix else str(key)


__all__ = ["CONFIG_PATH_VAR", "load_config", "merge_layer", "resolve_config_path", "resolve_default", "search_path",
           "shipped_config_dirs", "shipped_configs"]
