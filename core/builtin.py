"""The built-in plugin. esgkit's own components register through the same hook as third parties.

Each package folder lists its components in a ``register_builtins(register)`` function using lazy
``"module:Class"`` factories, so nothing heavy (torch, timm, transformers) is imported to list them.
"""

from __future__ import annotations

import importlib

from .hookspecs import RegisterFn, hookimpl

BUILTIN_PACKAGES = (
    "esgkit.components.segmenters",
    "esgkit.components.colorizers",
    "esgkit.components.encoders",
    "esgkit.components.fusers",
    "esgkit.components.decoders",
    "esgkit.components.associators",
    "esgkit.components.llms",
    "esgkit.pipelines",
    "esgkit.datasets",
    "esgkit.evaluation",
    "esgkit.experiments",
)

COMMAND_MODULES = (
    "esgkit.core.commands",
    "esgkit.datasets.cli",
    "esgkit.evaluation.cli",
    "esgkit.pipelines.profile",
    "esgkit.pipelines.demo",
    "esgkit.pipelines.gella_cli",
)


@hookimpl
def esgkit_register_components(register: RegisterFn) -> None:
    for package in BUILTIN_PACKAGES:
        importlib.import_module(package).register_builtins(register)


@hookimpl
def esgkit_register_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(subparsers)
