"""Process-wide settings of the command line: CPU threads and resource limits.

Threads: torch starts one intra-op thread per core. On a machine that is already busy (another
training, a test run, the other half of a side-by-side comparison) those threads fight over the same
cores and a step can run an order of magnitude slower than with one thread. esgkit therefore picks
the thread count once per process, before torch is imported:

1. ``--threads N`` on the command line, else ``ESGKIT_THREADS=N``;
2. else an ``OMP_NUM_THREADS`` the user already set is respected;
3. else the cores that are free now: ``cores − round(1-minute load average)``, at least 1.

The choice is exported as ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, so worker processes (ShapesWorld
writers, DDP ranks) inherit it.
"""

from __future__ import annotations

import os
import sys

from .errors import InputError

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def free_cores() -> int:
    """Cores not busy with other work right now (at least 1)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not every platform reports a load average
        return cores
    return max(1, min(cores, cores - round(load)))


def default_threads() -> tuple[int, str]:
    """(threads, why) under the rules of the module docstring, without a ``--threads`` flag."""
    raw = os.environ.get("ESGKIT_THREADS", "").strip()
    if raw:
        return parse_threads(raw, "ESGKIT_THREADS"), "ESGKIT_THREADS"
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw), "OMP_NUM_THREADS"
    return free_cores(), f"free cores ({os.cpu_count() or 1} cores, load {_load():.1f})"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return 0.0


def parse_threads(raw: str, where: str) -> int:
    try:
        n = int(raw)
    except ValueError:
        raise InputError(f"{where}={raw!r}: the number of threads must be a positive integer") from None
    if n < 1:
        raise InputError(f"{where}={raw!r}: the number of threads must be at least 1")
    return n


def configure_threads(requested: int | None = None) -> int:
    """Set this process's (and its children's) CPU thread count; returns it. Call before heavy work;
    if torch is already imported its intra-op pool is resized too."""
    n = requested if requested is not None else default_threads()[0]
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


__all__ = ["THREAD_VARS", "configure_threads", "default_threads", "free_cores", "parse_threads"]
