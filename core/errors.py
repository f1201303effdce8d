"""Every error esgkit raises on purpose. The whole hierarchy at a glance::

    EsgkitError                     base: the CLI prints its message, not a traceback
    ├── ConfigError                 a config key is missing, unknown, of the wrong type or value
    │   └── UnknownComponentError   a registry name that does not exist (with "did you mean")
    ├── RegistryError               a component registered wrongly (bad kind, bad interface)
    │   └── DuplicateComponentError two registrations of one name (names both origins)
    ├── PluginError                 a third-party plugin failed to load (strict mode)
    ├── InputError                  a missing/corrupt image, mask or data file; sizes that differ; a bound exceeded
    ├── OutputError                 an output path that would overwrite the user's files, or cannot be written
    ├── CompatibilityError          connected components that do not fit (channels, sizes)
    └── CheckpointError             a checkpoint of the wrong format or with missing/unexpected keys
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EsgkitError(Exception):
    """Base class: an error whose message alone tells the user what to fix."""


class ConfigError(EsgkitError):
    """A config value is wrong. ``key`` is the full dotted key, e.g. ``segmenter.crop_ratio``."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class UnknownComponentError(ConfigError):
    """A component name that is not registered for its kind."""

    def __init__(self, kind: str, name: str, known: Iterable[str], key: str | None = None) -> None:
        known = sorted(known)
        self.kind, self.name, self.suggestions = kind, name, close_matches(name, known)
        hint = f" Did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        where = f"{key}={name!r}" if key else repr(name)
        super().__init__(
            f"unknown {kind} {where}.{hint} "
            f"Run `esgkit list {kind}` to see the {len(known)} registered {kind} name(s).",
        )
        self.key = key


class RegistryError(EsgkitError):
    """A component was registered wrongly."""


class DuplicateComponentError(RegistryError):
    """The same (kind, name) was registered twice."""


class PluginError(EsgkitError):
    """A plugin failed to import or to register (raised only in strict mode)."""


class InputError(EsgkitError):
    """An input file or array is missing, unreadable or inconsistent."""


class OutputError(EsgkitError):
    """An output path that is refused (it holds the user's files, is an input, is a file where a
    folder is needed) or cannot be written."""


class CompatibilityError(EsgkitError):
    """Two connected components disagree (e.g. channel counts)."""


class CheckpointError(EsgkitError):
    """A checkpoint cannot be loaded into a component."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates close to ``word`` (difflib), for "did you mean" hints."""
    return difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
