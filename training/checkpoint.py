"""Training checkpoints that a crash cannot corrupt, and that load without executing code.

Layout of ``RUN/checkpoints/``::

    step_00000100/
        model.safetensors   model weights (safetensors; tied weights handled by ``save_model``)
        state.pt            optimiser, scheduler, grad-scaler and RNG states, step, extra
                            (plain tensors and Python values: ``torch.load(weights_only=True)``)
        config.json         the resolved config of the run, the step and the format tag
    latest.json             {"step": 100, "dir": "step_00000100"}

A checkpoint is written into a hidden temporary folder, flushed to disk, and renamed into place with
``os.replace``; only then is ``latest.json`` replaced (also write-then-rename). A crash or Ctrl-C at
any moment therefore leaves ``latest.json`` naming a complete checkpoint. Stale temporary folders are
removed by the next save; only the last ``keep_last`` checkpoints are kept (an old one is renamed to a
temporary name before it is deleted, so no ``step_*`` folder is ever half there).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_model

from esgkit.core.errors import CheckpointError
from esgkit.core.outputs import atomic_write, fsync_dir, fsync_file
from esgkit.layers.weights import LATEST, latest_checkpoint, list_checkpoints, load_weights

FORMAT = "esgkit-train-checkpoint-v1"


# --------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as weights_only-loadable values."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- saving


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str))  # leaves no stray file if killed


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    config: dict[str, Any] | None = None,
    rng: Any = None,
    extra: dict[str, Any] | None = None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint ``step`` atomically into ``ckpt_dir`` and point ``latest.json`` at it.

    ``rng`` defaults to this process's ``capture_rng_state()``; the data-parallel trainer passes the
    list of every process's states. Returns the checkpoint folder.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for stale in ckpt_dir.glob(".tmp-*"):  # left by an earlier crash
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpt_dir / step_dir_name(step)
    tmp = ckpt_dir / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": FORMAT, "step": str(step)})
    state = {
        "format": FORMAT,
        "step": step,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": capture_rng_state() if rng is None else rng,
        "extra": extra or {},
    }
    torch.save(state, tmp / "state.pt")
    with open(tmp / "config.json", "w") as f:
        json.dump({"format": FORMAT, "step": step, "config": config or {}}, f, indent=2, default=str)
    for name in ("model.safetensors", "state.pt", "config.json"):
        fsync_file(tmp / name)
    fsync_dir(tmp)
    if final.exists():  # the same step saved again (e.g. after a resume): swap the old one out
        old = ckpt_dir / f".tmp-old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(ckpt_dir)
    _write_json_atomic(ckpt_dir / LATEST, {"step": step, "dir": final.name})
    for _, old_path in list_checkpoints(ckpt_dir)[:-keep_last] if keep_last > 0 else []:
        if old_path != final:  # renamed away first: a kill mid-delete never leaves a half step_* folder
            doomed = ckpt_dir / f".tmp-old-{old_path.name}-{os.getpid()}"
            os.replace(old_path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- loading


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``state`` holds optimizer/scheduler/scaler/rng/extra, ``config`` the run's."""

    path: Path
    step: int
    state: dict[str, Any] = field(repr=False)
    config: dict[str, Any] = field(repr=False)

    def load_model(self, model: torch.nn.Module) -> None:
        """Load the weights into ``model``; a mismatch names the missing and unexpected keys."""
        load_weights(model, self.path / "model.safetensors", "training checkpoint",
                     hint="was it saved from another model or config?")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load the newest checkpoint under ``path`` (a run folder, ``checkpoints/`` or a step folder)."""
    folder = latest_checkpoint(path)
    if folder is None:
        raise CheckpointError(f"no checkpoint found under {path} (expected {path}/checkpoints/{LATEST} or step_* folders)")
    for name in ("model.safetensors", "state.pt", "config.json"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: incomplete checkpoint, {name} is missing")
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        meta = json.loads((folder / "config.json").read_text())
    except Exception as exc:
        raise CheckpointError(f"{folder}: unreadable checkpoint state ({type(exc).__name__}: {exc})") from exc
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{folder}: format {state.get('format')!r}, expected {FORMAT!r}")
    return Checkpoint(path=folder, step=int(state["step"]), state=state, config=meta.get("config", {}))


__all__ = ["FORMAT", "Checkpoint", "capture_rng_state", "load_checkpoint", "restore_rng_state", "save_checkpoint",
           "step_dir_name"]
