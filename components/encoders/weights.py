"""Loading a local weights file into a module: safetensors or ``torch.load(weights_only=True)``,
with errors that name every missing or unexpected key."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from esgkit.core import CheckpointError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat tensor dict from a ``.safetensors`` file or a torch file (weights_only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled code refused by weights_only, ...
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def check_keys(missing: list[str], unexpected: list[str], what: str) -> None:
    """Raise a CheckpointError listing missing and unexpected keys (core.checkpoints wording)."""
    from esgkit.core.checkpoints import key_parts

    parts = key_parts(missing, unexpected, limit=10)
    if not parts:
        return
    raise CheckpointError(f"{what}: {'; '.join(parts)} — is it a checkpoint of this architecture/config?")


def load_weights(module: nn.Module, path: str | Path, what: str, prefix: str = "",
                 skip: tuple[str, ...] = ()) -> None:
    """Load ``path`` into ``module`` strictly; ``prefix`` selects and strips a key prefix (e.g.
    ``visual.``); keys in ``skip`` (after stripping) are ignored."""
    state = read_state_dict(path)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"{what}: checkpoint {path} has no keys starting with {prefix!r}")
    state = {k: v for k, v in state.items() if k not in skip}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{what}: checkpoint {path} does not fit: {exc}") from exc
    check_keys(list(result.missing_keys), list(result.unexpected_keys), f"{what} ({path})")
