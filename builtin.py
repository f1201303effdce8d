"""The built-in plugin: esgkit's own components, training tasks, commands and shipped configs
register through the same hooks as a third party's.

It is the one module that names every built-in package (by string, imported on use), which is why
it sits above all of them, at the top of the ``esgkit`` package. Each package lists its components
in a ``register_builtins(register)`` function with lazy ``"module:Class"`` factories, so nothing
heavy (torch, timm, transformers) is imported to list them; each package with commands has a
``cli.py`` with ``add_commands(subparsers)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from esgkit.core.hookspecs import RegisterFn, hookimpl

BUILTIN_PACKAGES = (
    "esgkit.components.segmenters",
    "esgkit.components.colorizers",
    "esgkit.components.encoders.colormap",
    "esgkit.components.encoders.vision",
    "esgkit.components.fusers",
    "esgkit.components.decoders",
    "esgkit.components.associators",
    "esgkit.components.llms",
    "esgkit.components.text_encoders",
    "esgkit.components.referrers",
    "esgkit.pipelines",
    "esgkit.datasets",
    "esgkit.evaluation",
    "esgkit.training.tasks",
    "esgkit.experiments",
)

COMMAND_MODULES = (
    "esgkit.core.cli",
    "esgkit.datasets.cli",
    "esgkit.pipelines.cli",
    "esgkit.evaluation.cli",
    "esgkit.training.cli",
    "esgkit.experiments.grid.cli",
    "esgkit.ui.cli",
)

CONFIG_DIR = Path(__file__).resolve().parent / "pipelines" / "configs"
"""The shipped pipeline configs."""


@hookimpl
def esgkit_register_components(register: RegisterFn) -> None:
    for package in BUILTIN_PACKAGES:
        importlib.import_module(package).register_builtins(register)


@hookimpl
def esgkit_register_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(subparsers)


@hookimpl
def esgkit_config_dirs() -> list[str]:
    return [str(CONFIG_DIR)]


__all__ = ["BUILTIN_PACKAGES", "COMMAND_MODULES", "CONFIG_DIR"]
