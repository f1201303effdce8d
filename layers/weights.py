"""Weights I/O for every loader in esgkit: reading a state dict without executing code (safetensors,
or ``torch.load(weights_only=True)``), Hugging Face model folders, the newest checkpoint of a training
run, shipped weights inside the package, and one report of what does not fit a model.

The report always reads ``<what> does not fit (missing keys: …; unexpected keys: …; shape mismatch:
k found (…), expected (…)); <hint>``, whichever component loads the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esgkit.core.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The installed esgkit package; shipped weights (``models/...``) are found relative to it."""

DEFAULT_HINT = "is it a checkpoint of this architecture and config?"
LATEST = "latest.json"
STEP_DIR = re.compile(r"^step_(\d+)$")


# --------------------------------------------------------------------------- where weights are


def weights_path(path: str | Path) -> Path:
    """A weights path as given when it exists (or is absolute), else relative to the installed esgkit
    package, so a config can name weights shipped inside it (``models/gella_tiny/gella_tiny.safetensors``)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    shipped = PACKAGE_ROOT / given
    return shipped if shipped.exists() else given


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (``step_*`` folders) of a training run's ``checkpoints/``, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(path: str | Path) -> Path | None:
    """The newest complete checkpoint under a run folder, its ``checkpoints/`` folder, or ``path``
    itself when it is a checkpoint folder. ``None`` when there is none."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    pointer = ckpt_dir / LATEST
    if pointer.is_file():
        try:
            target = ckpt_dir / json.loads(pointer.read_text())["dir"]
            if target.is_dir():
                return target
        except (ValueError, KeyError, TypeError):
            pass  # unreadable pointer: fall back to the newest complete folder
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def trained_weights(path: str | Path) -> Path:
    """A weights file as given, or the weights of an ``esgkit train`` run folder: its newest
    checkpoint's ``model.safetensors`` (the run's final ``<name>.safetensors`` is a copy of it), else
    the one ``.safetensors`` file in the folder."""
    p = Path(path)
    if p.is_file():
        return p.resolve()
    if p.is_dir():
        folder = latest_checkpoint(p)
        if folder is not None:
            return (folder / "model.safetensors").resolve()
        files = sorted(p.glob("*.safetensors"))
        if len(files) == 1:
            return files[0].resolve()
    raise CheckpointError(f"{path}: no such weights file, and no checkpoint of `esgkit train` under it")


# --------------------------------------------------------------------------- reading


def read_state_dict(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A flat tensor dict from a ``.safetensors`` file or a torch file read with ``weights_only=True``
    (no pickled code); ``{"state_dict": …}`` / ``{"model": …}`` wrappers are unwrapped. Shipped
    weights are found through ``weights_path``."""
    import torch

    file = weights_path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} {path}: no such file (give a local weights file)")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled code refused by weights_only, ...
        raise CheckpointError(f"{what} {path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} {path}: not a plain state dict of tensors (got {type(state).__name__})")
    return state


def read_model_dir(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model folder: ``model.safetensors``, a sharded
    ``model.safetensors.index.json``, or ``pytorch_model.bin`` (read with ``weights_only=True``)."""
    import torch
    from safetensors.torch import load_file

    directory = Path(directory)
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                state.update(load_file(str(directory / shard)))
            return state
        if legacy.is_file():
            return torch.load(str(legacy), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, bad JSON, pickled code refused by weights_only
        raise CheckpointError(f"{directory}: cannot read the weights ({type(exc).__name__}: {exc})") from exc
    raise CheckpointError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                          "found; give a Hugging Face model directory")


def select_prefix(state: Mapping[str, Any], prefix: str, what: str) -> dict[str, Any]:
    """The keys starting with ``prefix``, with it stripped (CheckpointError when none does)."""
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise CheckpointError(f"{what}: no keys starting with {prefix!r}")
    return picked


# --------------------------------------------------------------------------- the one report


def key_names(keys: Iterable[str], limit: int = 8) -> str:
    """``a, b, c … (N in all)``: the first ``limit`` of the keys, sorted."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" … ({len(keys)} in all)" if len(keys) > limit else "")


def mismatch(found: Mapping[str, Any] | Iterable[str], expected: Mapping[str, Any] | Iterable[str],
             optional: Iterable[str] = (), limit: int = 8) -> list[str]:
    """The parts of the report for a state dict ``found`` against the ``expected`` one (either may be
    key names only; shapes are compared where both give tensors): ``missing keys: …``, ``unexpected
    keys: …``, ``shape mismatch: …``. Keys in ``optional`` may be absent. Empty when everything fits."""
    have = set(found.keys() if isinstance(found, Mapping) else found)
    want = set(expected.keys() if isinstance(expected, Mapping) else expected)
    parts = []
    missing, unexpected = want - have - set(optional), have - want
    if missing:
        parts.append(f"missing keys: {key_names(missing, limit)}")
    if unexpected:
        parts.append(f"unexpected keys: {key_names(unexpected, limit)}")
    if isinstance(found, Mapping) and isinstance(expected, Mapping):
        wrong = sorted(k for k in have & want if hasattr(found[k], "shape") and hasattr(expected[k], "shape")
                       and tuple(found[k].shape) != tuple(expected[k].shape))
        if wrong:
            parts.append("shape mismatch: " + ", ".join(
                f"{k} found {tuple(found[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:limit]))
    return parts


def raise_mismatch(what: str, parts: list[str], hint: str = DEFAULT_HINT) -> None:
    """Raise the report as a CheckpointError (nothing when ``parts`` is empty)."""
    if parts:
        raise CheckpointError(f"{what} does not fit ({'; '.join(parts)}); {hint}")


def raise_loading_report(what: str, info: Mapping[str, Any], hint: str = DEFAULT_HINT,
                         optional: Iterable[str] = ()) -> None:
    """transformers' ``from_pretrained(..., output_loading_info=True)`` report (missing, unexpected and
    mismatched keys, in transformers' names) raised as the one report; keys in ``optional`` may be missing."""
    import torch

    shapes = [(key, torch.empty(found, device="meta"), torch.empty(want, device="meta"))
              for key, found, want in info.get("mismatched_keys", ())]
    found = {**dict.fromkeys(info.get("unexpected_keys", ())), **{k: f for k, f, _ in shapes}}
    expected = {**dict.fromkeys(set(info.get("missing_keys", ())) - set(optional)), **{k: w for k, _, w in shapes}}
    raise_mismatch(what, mismatch(found, expected), hint)


def tied_groups(module: nn.Module) -> list[set[str]]:
    """Groups of state-dict keys of ``module`` that share one tensor (tied weights, which safetensors
    stores under one of their names)."""
    groups: dict[tuple[int, int], set[str]] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        if tensor.device.type != "meta" and tensor.numel():
            groups.setdefault((tensor.data_ptr(), tensor.numel()), set()).add(key)
    return [g for g in groups.values() if len(g) > 1]


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, hint: str = DEFAULT_HINT,
               optional: Iterable[str] = ()) -> None:
    """Load ``state`` into ``module`` when every key fits (of tied weights one name is enough);
    otherwise raise the report without touching the module."""
    optional = set(optional).union(*[g for g in tied_groups(module) if g & set(state)])
    raise_mismatch(what, mismatch(state, module.state_dict(), optional), hint)
    module.load_state_dict(dict(state), strict=False)


def load_weights(module: nn.Module, path: str | Path, what: str, prefix: str = "", skip: Iterable[str] = (),
                 hint: str = DEFAULT_HINT) -> None:
    """Read ``path`` (``read_state_dict``) and load it into ``module`` strictly; ``prefix`` selects and
    strips a key prefix (e.g. ``visual.``), keys in ``skip`` (after stripping) are ignored."""
    state = read_state_dict(path, what)
    if prefix:
        state = select_prefix(state, prefix, f"{what} ({path})")
    skip = set(skip)
    load_state(module, {k: v for k, v in state.items() if k not in skip}, f"{what} ({path})", hint)


__all__ = [
    "PACKAGE_ROOT", "key_names", "latest_checkpoint", "list_checkpoints", "load_state", "load_weights", "mismatch",
    "raise_loading_report", "raise_mismatch", "read_model_dir", "read_state_dict", "select_prefix", "tied_groups",
    "trained_weights", "weights_path",
]
