"""The pluggy hook specifications: the whole contract between esgkit and its plugins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "esgkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

RegisterFn = Callable[..., None]


@hookspec
def esgkit_register_components(register: RegisterFn) -> None:
    """Register components.

    Call ``register(kind, name, factory, description=None)`` once per component:

    * ``kind`` — a registry namespace (``esgkit list`` shows them), e.g. ``"segmenter"``;
    * ``name`` — the key configs use (``segmenter: {name: my_segmenter}``);
    * ``factory`` — a class implementing that kind's interface (``esgkit.core.Segmenter`` …), or a
      ``"package.module:Class"`` string that is imported only when the component is first used, so
      listing stays fast for plugins with heavy imports;
    * ``description`` — one line for ``esgkit list`` (defaults to the class docstring's first line).

    Kinds: ``esgkit list`` prints them — the component kinds of the pipelines (``segmenter``,
    ``colorizer``, …) and ``dataset``, ``evaluator``, ``task`` (a training task that ``esgkit train``
    dispatches to), ``executor``. Built-in components register through this same hook.
    """


@hookspec
def esgkit_config_dirs() -> list[str]:
    """Return folders of shipped YAML configs.

    ``esgkit run NAME``, ``esgkit train NAME`` … find ``NAME.yaml`` in them (a path given on the
    command line always wins; the built-in configs are searched first). A plugin that ships
    pipelines can ship their configs this way::

        @hookimpl
        def esgkit_config_dirs():
            return [str(Path(__file__).parent / "configs")]
    """


@hookspec
def esgkit_register_commands(subparsers: Any) -> None:
    """Add sub-commands to the ``esgkit`` command line.

    ``subparsers`` is the ``argparse`` sub-parser action of the ``esgkit`` parser. Add a parser and
    set ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code::

        p = subparsers.add_parser("hello", help="say hello")
        p.set_defaults(func=lambda args: print("hello") or 0)

    Each plugin's implementation runs on its own: one that raises is reported by ``esgkit plugins``
    and its commands are left out (an error in strict mode, ``ESGKIT_STRICT_PLUGINS=1``). A command
    name already taken (a built-in's such as ``run``, or an earlier plugin's) is not added: the
    clash is reported the same way, naming both plugins.
    """


__all__ = ["PROJECT", "RegisterFn", "esgkit_config_dirs", "esgkit_register_commands", "esgkit_register_components", "hookimpl", "hookspec"]
