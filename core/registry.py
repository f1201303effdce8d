"""The component registry, filled through pluggy hooks by built-ins and third-party plugins alike.

Third-party plugins are found through the ``esgkit`` entry-point group and loaded one at a time: a
plugin that fails to import, registers wrongly, or implements a hook that does not exist (a
misspelled ``esgkit_register_component``) is reported and skipped, and the rest keep working. Each
plugin's ``esgkit_register_commands`` runs in isolation too, when the command line is built.
Environment variables:

* ``ESGKIT_STRICT_PLUGINS=1`` — a failing plugin is an error (``PluginError`` naming it);
* ``ESGKIT_PLUGINS=a,b`` — allow-list of entry-point names (set but empty: no third-party plugins);
* ``ESGKIT_DISABLE_PLUGINS=a,b`` — block-list of entry-point names.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib
import importlib.metadata
import inspect
import os
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import (
    ConfigError, DuplicateComponentError, EsgkitError, PluginError, RegistryError, UnknownComponentError, close_matches,
)
from .interfaces import INTERFACES, Component

ENTRY_POINT_GROUP = "esgkit"
BUILTIN_PLUGIN = "esgkit.builtin"


@dataclass
class Entry:
    """One registered component. ``factory`` is a class or a lazy ``"module:attr"`` string."""

    kind: str
    name: str
    factory: Any
    origin: str
    description: str = ""

    def resolve(self) -> type[Component]:
        """Import (if lazy) and check the component class; cached after the first call."""
        if isinstance(self.factory, str):
            module_name, _, attr = self.factory.partition(":")
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise RegistryError(
                    f"{self.kind} {self.name!r} (from {self.origin}) cannot be imported from "
                    f"{self.factory!r}: {type(exc).__name__}: {exc}"
                ) from exc
            _check_factory(self.kind, self.name, obj, self.origin)
            self.factory = obj
        return self.factory


@dataclass
class PluginInfo:
    """What ``esgkit plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    components: list[str] = field(default_factory=list)
    config_dirs: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    command_error: str | None = None  # its esgkit_register_commands failed, or a command clashed (skipped)
    commands: list[str] = field(default_factory=list)  # the commands it added to the command line

    @property
    def where(self) -> str:
        return f" ({self.distribution} {self.version})" if self.distribution else ""


def _check_factory(kind: str, name: str, factory: Any, origin: str) -> None:
    interface = INTERFACES[kind]
    if not (inspect.isclass(factory) and issubclass(factory, interface)):
        raise RegistryError(
            f"{origin} registers {kind} {name!r} as {factory!r}, which does not implement "
            f"esgkit.core.{interface.__name__}; subclass it"
        )
    if not dataclasses.is_dataclass(factory.Config):
        raise RegistryError(f"{origin} registers {kind} {name!r}: its Config must be a dataclass")


def _env_list(var: str) -> list[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _description(factory: Any) -> str:
    """The first line of the class docstring; for a lazy factory, where it will be imported from
    (its docstring is not read, so that listing imports nothing)."""
    if isinstance(factory, str):
        return f"(lazy {factory}; no description given)"
    doc = (inspect.getdoc(factory) or "").strip()
    return doc.splitlines()[0] if doc else f"({factory.__module__}.{factory.__qualname__}; no docstring)"


def strict_plugins() -> bool:
    """``ESGKIT_STRICT_PLUGINS`` is set: a plugin that fails is an error, not a warning."""
    return os.environ.get("ESGKIT_STRICT_PLUGINS", "") not in ("", "0")


class Registry:
    """Components by kind and name, the plugins' config folders, and what each plugin contributed
    or why it failed."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in INTERFACES}
        self.plugins: dict[str, PluginInfo] = {}
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)

    # ---------------------------------------------------------------- registering
    def register(self, kind: str, name: str, factory: Any, description: str | None = None, *, origin: str) -> None:
        if kind not in self._entries:
            raise RegistryError(
                f"{origin} registers {name!r} under unknown kind {kind!r}; kinds are: {', '.join(self._entries)}"
            )
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{origin} registers a {kind} with an empty or non-string name")
        if isinstance(factory, str):
            if ":" not in factory:
                raise RegistryError(f"{origin} registers {kind} {name!r} with lazy factory {factory!r}; use 'module:Class'")
        else:
            _check_factory(kind, name, factory, origin)
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {existing.origin} and by {origin}; "
                "rename one, or disable a plugin with ESGKIT_DISABLE_PLUGINS"
            )
        self._entries[kind][name] = Entry(kind, name, factory, origin, description or _description(factory))
        if origin in self.plugins:
            self.plugins[origin].components.append(f"{kind}:{name}")

    def _register_fn(self, origin: str) -> Callable[..., None]:
        def register(kind: str, name: str, factory: Any, description: str | None = None) -> None:
            self.register(kind, name, factory, description, origin=origin)

        return register

    def load_plugins(self, builtin: Any, entry_points: Iterable[Any] | None = None) -> None:
        """Register the built-in plugin, then each third-party entry point, one at a time."""
        allow = _env_list("ESGKIT_PLUGINS")
        block = set(_env_list("ESGKIT_DISABLE_PLUGINS") or [])
        self._load_one(BUILTIN_PLUGIN, lambda: builtin, None, strict=True)
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: e.name):
            if (allow is not None and ep.name not in allow) or ep.name in block:
                continue
            self._load_one(ep.name, ep.load, getattr(ep, "dist", None), strict=strict_plugins())

    def _impls(self, hook: str, plugin: str) -> list[Any]:
        return [i for i in getattr(self.plugin_manager.hook, hook).get_hookimpls() if i.plugin_name == plugin]

    def _load_one(self, name: str, load: Callable[[], Any], dist: Any, strict: bool) -> None:
        info = PluginInfo(name, getattr(dist, "name", None), getattr(dist, "version", None))
        self.plugins[name] = info
        before = {k: dict(v) for k, v in self._entries.items()}
        try:
            module = load()
            self.plugin_manager.register(module, name=name)
            self.plugin_manager.check_pending()  # a hookimpl whose hook does not exist (misspelled)
            for impl in self._impls("esgkit_register_components", name):
                impl.function(register=self._register_fn(name))
            for impl in self._impls("esgkit_config_dirs", name):
                info.config_dirs += [str(Path(d)) for d in impl.function()]
        except Exception as exc:  # a broken plugin must not take the others down
            self._entries = before  # drop its partial registrations
            info.components.clear()
            info.config_dirs.clear()
            if self.plugin_manager.has_plugin(name):
                self.plugin_manager.unregister(name=name)
            info.error = _plugin_error(exc)
            info.traceback = traceback.format_exc()
            self._fail(info, exc, "failed to load", strict)

    def _fail(self, info: PluginInfo, exc: Exception | None, what: str, strict: bool, detail: str = "") -> None:
        message = f"plugin {info.name!r}{info.where} {what}: {detail or _plugin_error(exc)}"  # type: ignore[arg-type]
        if strict:
            raise PluginError(f"{message} (unset ESGKIT_STRICT_PLUGINS to skip it, or ESGKIT_DISABLE_PLUGINS="
                              f"{info.name} to disable it)") from exc
        warnings.warn(f"esgkit {message}; it is skipped", stacklevel=3)

    def register_commands(self, subparsers: Any) -> None:
        """Call every plugin's ``esgkit_register_commands`` in isolation: a hook that raises is
        reported (``esgkit plugins``) and its half-added commands are removed; the others stay.

        A command (or alias) already registered — a built-in's, or an earlier plugin's (plugins load
        in name order) — is a clash: the later plugin's command is not added (the first one's parser
        is kept, even where argparse would replace it) and the clash is that plugin's error, naming
        both plugins; with ``ESGKIT_STRICT_PLUGINS=1`` (or among built-ins) a PluginError."""
        owners: dict[str, str] = {}  # command or alias → the plugin that added it
        for info in self.plugins.values():  # a fresh command line: forget a previous one's report
            info.command_error, info.commands = None, []
        for name, info in self.plugins.items():
            if info.error:
                continue
            strict = strict_plugins() or name == BUILTIN_PLUGIN
            for impl in self._impls("esgkit_register_commands", name):
                before = dict(subparsers.choices)
                actions_before = list(subparsers._choices_actions)
                clashes: list[str] = []
                subparsers.add_parser = _guarded_add_parser(subparsers, owners, clashes)
                try:
                    impl.function(subparsers=subparsers)
                except Exception as exc:
                    _restore_commands(subparsers, before, actions_before)
                    info.command_error = _plugin_error(exc)
                    self._fail(info, exc, "could not add its commands", strict)
                    continue
                finally:
                    del subparsers.add_parser  # the instance attribute: argparse's own method again
                # a command put in place some other way than add_parser, replacing an existing one
                for cmd, parser in before.items():
                    if subparsers.choices.get(cmd) is not parser:
                        clashes.append(f"command {cmd!r} is already registered by {owners.get(cmd, BUILTIN_PLUGIN)}")
                        subparsers.choices[cmd] = parser
                        subparsers._choices_actions[:] = [a for a in subparsers._choices_actions
                                                          if a in actions_before or a.dest != cmd]
                for cmd in subparsers.choices:
                    if cmd not in before:
                        owners[cmd] = name
                        info.commands.append(cmd)
                if clashes:
                    detail = "; ".join(dict.fromkeys(clashes))
                    info.command_error = f"{info.command_error}; {detail}" if info.command_error else detail
                    self._fail(info, None, "could not add its commands", strict, detail=detail)

    # ---------------------------------------------------------------- looking up
    @property
    def kinds(self) -> list[str]:
        return list(self._entries)

    @property
    def config_dirs(self) -> list[Path]:
        """Every loaded plugin's folders of shipped configs, built-ins first."""
        return [Path(d) for info in self.plugins.values() if not info.error for d in info.config_dirs]

    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        self._check_kind(kind)
        names = sorted(self._entries[kind])
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names

    def entry(self, kind: str, name: str, key: str | None = None) -> Entry:
        self._check_kind(kind)
        if name not in self._entries[kind]:
            raise UnknownComponentError(kind, str(name), self._entries[kind], key)
        return self._entries[kind][name]

    def get(self, kind: str, name: str, key: str | None = None) -> type[Component]:
        """The component class registered as ``name`` under ``kind``."""
        return self.entry(kind, name, key).resolve()

    def validated(self, kind: str, section: Mapping[str, Any] | str | Any, key: str) -> tuple[str, Any]:
        """Split a config section ``{name: ..., **options}`` (or a bare name) into the name and a
        validated ``Config`` instance; errors name the full key (``key.option``)."""
        from .schema import to_container, validate_dataclass

        if isinstance(section, str):
            section = {"name": section}
        values = to_container(section, key) if section is not None else {}
        if "name" not in values:
            raise ConfigError(f"missing 'name' of the {kind} (run `esgkit list {kind}`)", key=f"{key}.name")
        name = str(values.pop("name"))
        return name, validate_dataclass(self.get(kind, name, f"{key}.name").Config, values, key)

    def build(self, kind: str, section: Mapping[str, Any] | Any, key: str | None = None) -> Component:
        """Build a component from its config section ``{name: ..., **options}``."""
        key = key or kind
        name, config = self.validated(kind, section, key)
        return self.create(kind, name, config, key)

    def create(self, kind: str, name: str, config: Any, key: str | None = None) -> Component:
        """Build a component from an already validated ``Config`` instance."""
        key = key or kind
        cls = self.get(kind, name, f"{key}.name")
        try:
            return cls.from_config(config)
        except EsgkitError:
            raise
        except Exception as exc:
            raise RegistryError(f"building {key} ({kind} {name!r}) failed: {type(exc).__name__}: {exc}") from exc

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            hint = close_matches(kind, self._entries)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise RegistryError(f"unknown component kind {kind!r}.{extra} Kinds: {', '.join(self._entries)}")


def _guarded_add_parser(subparsers: Any, owners: Mapping[str, str], clashes: list[str]) -> Callable[..., Any]:
    """``subparsers.add_parser`` that refuses a name or alias already taken: the clash is recorded
    in ``clashes`` and a parser attached to nothing is returned, so the hook's next lines (adding
    arguments) and its other commands still work."""
    add_parser = subparsers.add_parser

    def guarded(cmd: str, **kwargs: Any) -> argparse.ArgumentParser:
        taken = [n for n in (cmd, *kwargs.get("aliases", ())) if n in subparsers.choices]
        if taken:
            clashes.append(f"command {taken[0]!r} is already registered by {owners.get(taken[0], BUILTIN_PLUGIN)}")
            return argparse.ArgumentParser(prog=f"esgkit {cmd}", add_help=False)
        return add_parser(cmd, **kwargs)

    return guarded


def _restore_commands(subparsers: Any, before: Mapping[str, Any], actions_before: list[Any]) -> None:
    """Put the subcommands back as they were: added ones removed, replaced ones restored."""
    for cmd in set(subparsers.choices) - set(before):
        del subparsers.choices[cmd]
    subparsers.choices.update(before)
    subparsers._choices_actions[:] = actions_before


def _plugin_error(exc: Exception) -> str:
    """One line: the error, with a "did you mean" for a misspelled hook name."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, pluggy.PluginValidationError):
        names = [n for n in dir(hookspecs) if n.startswith("esgkit_")]
        bad = [w.strip("'\"().,:") for w in str(exc).split() if w.strip("'\"().,:").startswith("esgkit_")]
        hints = [m for b in bad if b not in names for m in close_matches(b, names, n=1)]
        if hints:
            text += f" (not an esgkit hook; did you mean {hints[0]!r}?)"
    return text


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, with built-ins and third-party plugins loaded (once)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        from esgkit import builtin

        registry = Registry()
        registry.load_plugins(builtin)
        _REGISTRY = registry
    return _REGISTRY


__all__ = ["BUILTIN_PLUGIN", "ENTRY_POINT_GROUP", "Entry", "PluginInfo", "Registry", "get_registry", "strict_plugins"]
