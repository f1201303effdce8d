"""Lazy package exports (PEP 562): a package names what it offers in ``__all__`` and imports the
module behind a name only when that name is first used, so ``esgkit list`` and ``import esgkit.core``
do not pay for torch, NumPy or OmegaConf."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps an exported name to the submodule
    (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
            setattr(importlib.import_module(package), name, value)  # later lookups skip this hook
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*names, *vars(importlib.import_module(package))})

    return __getattr__, __dir__


def builtin_components(package: str, rows: Sequence[tuple[str, str, str, str]], exports: Mapping[str, str] | None = None
                       ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]], Callable[..., None]]:
    """What a built-in package's ``__init__`` needs, from one table of its components:
    ``(__all__, __getattr__, __dir__, register_builtins)``.

    ``rows`` are ``(kind, name, "module:Class", description)`` with the module relative to
    ``package``; each class is exported lazily, as are the extra ``exports`` (name → module), and
    ``register_builtins(register)`` registers every row as a lazy ``"package.module:Class"`` factory
    (through the same ``register`` callback a third-party plugin gets)."""
    names = {target.split(":")[1]: target.split(":")[0] for _, _, target, _ in rows}
    names.update(exports or {})

    def register_builtins(register: Callable[..., None]) -> None:
        for kind, name, target, description in rows:
            register(kind, name, f"{package}.{target}", description)

    return sorted([*names, "register_builtins"]), *lazy_exports(package, names), register_builtins


__all__ = ["builtin_components", "lazy_exports"]
