"""The component registry, filled through pluggy hooks by built-ins and third-party plugins alike.

Third-party plugins are found through the ``esgkit`` entry-point group and loaded one at a time: a
plugin that fails to import or register is reported and skipped, and the rest keep working.
Environment variables:

* ``ESGKIT_STRICT_PLUGINS=1`` — a failing plugin is an error (``PluginError`` naming it);
* ``ESGKIT_PLUGINS=a,b`` — allow-list of entry-point names (set but empty: no third-party plugins);
* ``ESGKIT_DISABLE_PLUGINS=a,b`` — block-list of entry-point names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import inspect
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, RegistryError, DuplicateComponentError, UnknownComponentError
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
    error: str | None = None
    traceback: str | None = None


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
    if isinstance(factory, str):
        return ""
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Components by kind and name, plus what each plugin contributed or why it failed."""

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

    def _register_fn(self, origin: str):  # type: ignore[no-untyped-def]
        def register(kind: str, name: str, factory: Any, description: str | None = None) -> None:
            self.register(kind, name, factory, description, origin=origin)

        return register

    def load_plugins(self, builtin: Any, entry_points: Iterable[Any] | None = None) -> None:
        """Register the built-in plugin, then each third-party entry point, one at a time."""
        strict = os.environ.get("ESGKIT_STRICT_PLUGINS", "") not in ("", "0")
        allow = _env_list("ESGKIT_PLUGINS")
        block = set(_env_list("ESGKIT_DISABLE_PLUGINS") or [])
        self._load_one(BUILTIN_PLUGIN, lambda: builtin, None, strict=True)
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: e.name):
            if (allow is not None and ep.name not in allow) or ep.name in block:
                continue
            self._load_one(ep.name, ep.load, getattr(ep, "dist", None), strict=strict)

    def _load_one(self, name: str, load: Any, dist: Any, strict: bool) -> None:
        info = PluginInfo(name, getattr(dist, "name", None), getattr(dist, "version", None))
        self.plugins[name] = info
        before = {k: dict(v) for k, v in self._entries.items()}
        try:
            module = load()
            self.plugin_manager.register(module, name=name)
            for impl in self.plugin_manager.hook.esgkit_register_components.get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(register=self._register_fn(name))
        except Exception as exc:  # a broken plugin must not take the others down
            self._entries = before  # drop its partial registrations
            info.components.clear()
            if self.plugin_manager.has_plugin(name):
                self.plugin_manager.unregister(name=name)
            info.error = f"{type(exc).__name__}: {exc}"
            info.traceback = traceback.format_exc()
            where = f" ({info.distribution} {info.version})" if info.distribution else ""
            if strict:
                raise PluginError(
                    f"plugin {name!r}{where} failed to load: {info.error} "
                    "(unset ESGKIT_STRICT_PLUGINS to skip it, or ESGKIT_DISABLE_PLUGINS="
                    f"{name} to disable it)"
                ) from exc
            import warnings

            warnings.warn(f"esgkit plugin {name!r}{where} failed to load and is skipped: {info.error}", stacklevel=2)

    # ---------------------------------------------------------------- looking up
    @property
    def kinds(self) -> list[str]:
        return list(self._entries)

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

    def build(self, kind: str, section: Mapping[str, Any] | Any, key: str | None = None) -> Component:
        """Build a component from its config section ``{name: ..., **options}``."""
        from .config import component_config  # late: config imports this module

        key = key or kind
        name, config = component_config(self, kind, section, key)
        return self.create(kind, name, config, key)

    def create(self, kind: str, name: str, config: Any, key: str | None = None) -> Component:
        """Build a component from an already validated ``Config`` instance."""
        key = key or kind
        cls = self.get(kind, name, f"{key}.name")
        try:
            return cls.from_config(config)
        except Exception as exc:
            from .errors import EsgkitError

            if isinstance(exc, EsgkitError):
                raise
            raise RegistryError(f"building {key} ({kind} {name!r}) failed: {type(exc).__name__}: {exc}") from exc

    def _check_kind(self, kind: str) -> None:
        if kind not in self._entries:
            from .errors import close_matches

            hint = close_matches(kind, self._entries)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise RegistryError(f"unknown component kind {kind!r}.{extra} Kinds: {', '.join(self._entries)}")


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, with built-ins and third-party plugins loaded (once)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        from . import builtin

        registry = Registry()
        registry.load_plugins(builtin)
        _REGISTRY = registry
    return _REGISTRY
