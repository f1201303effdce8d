"""Cell folders: ``GRID/cells/<hash>/``, named by the hash of what determines the cell's result — its
resolved config, what it does and on which data, esgkit's version and the hashes of the weight files
its config names (except those a training cell replaces) — so an unchanged cell keeps its folder
across runs and a changed one gets a new one.

A cell folder holds ``config.yaml`` (the resolved config), ``cell.json`` (label, axis choices, seed,
identity), ``status.json`` (``pending`` / ``running`` / ``done`` / ``failed``, with times, attempts, the
error), ``log.txt`` (everything the cell printed), ``metrics.json``, and ``train/`` (the training run, with
its checkpoints) and ``eval/`` (prediction files). Every file is written atomically
(``esgkit.core.outputs``), so ``kill -9`` leaves the previous state, never a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esgkit.core.json_input import read_state
from esgkit.core.outputs import atomic_write_json

STATES = ("pending", "running", "done", "failed")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".gguf", ".ckpt")
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file (remembered per path, size and mtime within this process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def folder_sha256(folder: Path) -> str:
    """sha256 over a Hugging Face model folder's weight and JSON files (names and contents): what a
    model read from the folder depends on."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((*WEIGHT_SUFFIXES, ".json")))
    return digest([(p.name, file_sha256(p)) for p in files], 64)


def weights_hashes(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{dotted key: sha256}`` for every value of ``config`` naming an existing weights file (resolved
    like the components do: as given, else inside the installed package) or a Hugging Face model
    folder (one holding ``config.json``)."""
    from esgkit.layers.weights import weights_path

    found: dict[str, str] = {}
    for key, value in config.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.update(weights_hashes(value, f"{full}."))
        elif isinstance(value, str) and value.endswith(WEIGHT_SUFFIXES):
            path = weights_path(value)
            found[full] = file_sha256(path) if path.is_file() else "missing"
        elif isinstance(value, str) and value and (folder := weights_path(value)).joinpath("config.json").is_file():
            found[full] = folder_sha256(folder)
    return found


def identity(config: Mapping[str, Any], what: Mapping[str, Any]) -> dict[str, Any]:
    """What determines a cell's result: its resolved config, ``what`` (steps, data, split, skipped parts),
    esgkit's version and the weights' hashes — but not those of the weights a training cell replaces
    with its own (the pipeline's ``weights_key``): shipping a model must not re-key the grid it came from."""
    from esgkit import __version__

    weights = weights_hashes(config)
    if "train" in what.get("do", ()):
        weights.pop(trained_weights_key(config), None)
    return {"config": dict(config), **dict(what), "esgkit": __version__, "weights": weights}


def resolved_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every component section as the component reads it — its typed Config, defaults
    filled in — so two configs that differ only in spelling out a default are equal here. The ``train``
    and ``eval`` sections stay as written (their keys depend on the task)."""
    import dataclasses

    from esgkit.core.pipeline import RESERVED_SECTIONS, validate_pipeline_config

    def plain(cfg: Any) -> Any:
        return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else cfg

    checked = validate_pipeline_config(dict(config))
    out: dict[str, Any] = {k: config[k] for k in RESERVED_SECTIONS if k in config}
    out["pipeline"] = {"name": checked.name, **plain(checked.config)}
    for role, (_kind, name, cfg) in checked.slots.items():
        body = plain(cfg)
        out[role] = {"name": name, **body} if isinstance(body, Mapping) else {"name": name, "config": body}
    return out


def trained_weights_key(config: Mapping[str, Any]) -> str:
    """The dotted key of the weights that training the config's pipeline produces ("" when none)."""
    from esgkit.core import get_registry

    name = str((config.get("pipeline") or {}).get("name", ""))
    try:
        return str(get_registry().get("pipeline", name, "pipeline.name").weights_key or "")
    except Exception:  # an unknown pipeline is refused when the cell is composed, not here
        return ""


def digest(data: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:n]


def read_status(folder: Path) -> dict[str, Any]:
    """The cell's ``status.json`` (``{"state": "pending"}`` when there is none or it is unreadable)."""
    status = read_state(folder / "status.json")
    return status if status and status.get("state") in STATES else {"state": "pending"}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_status(folder: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Set the cell's state (keeping what the earlier status said that ``fields`` does not replace)."""
    assert state in STATES, state
    status = {**read_status(folder), **fields, "state": state, "updated": now()}
    if state == "running":
        status.update(pid=os.getpid(), host=socket.gethostname(), attempts=int(status.get("attempts", 0)) + 1)
        for stale in ("finished", "seconds", "error", "resumed_from"):
            status.pop(stale, None)
    atomic_write_json(folder / "status.json", status)
    return status


def update_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Add ``fields`` to the cell's status, keeping its state."""
    status = {**read_status(folder), **fields, "updated": now()}
    atomic_write_json(folder / "status.json", status)
    return status


def is_done(folder: Path) -> bool:
    return read_status(folder)["state"] == "done" and (folder / "metrics.json").is_file()


__all__ = ["STATES", "digest", "file_sha256", "identity", "is_done", "read_status", "resolved_config",
           "trained_weights_key", "update_status", "weights_hashes", "write_status"]
