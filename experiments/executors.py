"""Grid executors (the ``executor`` kind): where independent jobs such as grid cells run.

``map(fn, items)`` yields ``(item, result)`` as each job finishes, in completion order; a job that
raises yields ``(item, exception)`` and the others go on. ``fn`` must be a module-level function
(it is pickled to the workers).

* ``local`` — a process pool on this machine. Each worker gets ``cpus_per_cell`` CPU threads
  (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/torch), and there are ``cores // cpus_per_cell`` workers
  unless ``workers`` says otherwise, so the cores are not oversubscribed. Workers are started with
  ``spawn`` (torch's threads do not survive ``fork``) and exit when the parent process dies
  (``kill -9`` included), so a restarted grid never races an orphan.
* ``ray`` — Ray tasks (``pip install 'esgkit[ray]'``) on a local Ray started here (``num_cpus``) or
  an existing cluster (``address: auto`` or ``ray://host:10001``), ``cpus_per_cell`` CPUs each. The
  cell folders must then be on a filesystem every node sees.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from esgkit.core import Executor
from esgkit.core.errors import CompatibilityError, ConfigError
from esgkit.core.runtime import THREAD_VARS, configure_threads

RAY_MISSING = ("the ray executor needs Ray, an optional extra that is not installed; install it with "
               "pip install 'esgkit[ray]' (or pip install 'ray>=2'), or use --executor local")


def ray_available() -> bool:
    """Whether Ray can be imported (checked without importing it)."""
    return importlib.util.find_spec("ray") is not None


def call_guarded(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """``(True, fn(item))``, or ``(False, exception)`` when it raises: the exception travels back as a
    value (with its traceback as text in ``esgkit_traceback``), never as the executor's own error."""
    try:
        return True, fn(item)
    except Exception as exc:  # noqa: BLE001 - isolated: reported by the caller
        exc.esgkit_traceback = traceback.format_exc()  # type: ignore[attr-defined]
        try:
            import pickle

            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: its text does
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            exc.esgkit_traceback = traceback.format_exc()  # type: ignore[attr-defined]
        return False, exc


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # the parent died (kill -9): this worker's cell is abandoned
            os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    configure_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="esgkit-parent-watch").start()


@dataclass
class LocalConfig:
    """``workers``: parallel jobs (0: cores // cpus_per_cell, at least 1); ``cpus_per_cell``: CPU threads of
    each job; ``start_method``: spawn (default), forkserver or fork."""

    workers: int = 0
    cpus_per_cell: int = 1
    start_method: str = "spawn"


class LocalExecutor(Executor):
    """A process pool on this machine, CPU threads per job set so the cores are not oversubscribed."""

    Config = LocalConfig

    def __init__(self, config: LocalConfig) -> None:
        if config.cpus_per_cell < 1:
            raise ConfigError("must be at least 1", key="executor.cpus_per_cell")
        if config.workers < 0:
            raise ConfigError("must be 0 (one per cpus_per_cell cores) or more", key="executor.workers")
        if config.start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(f"{config.start_method!r} is not a start method here "
                              f"({', '.join(multiprocessing.get_all_start_methods())})", key="executor.start_method")
        self.config = config

    @property
    def workers(self) -> int:
        return self.config.workers or max(1, (os.cpu_count() or 1) // self.config.cpus_per_cell)

    def _pool(self, jobs: int) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context(self.config.start_method)
        return cf.ProcessPoolExecutor(max(1, min(self.workers, jobs)), mp_context=context, initializer=_init_worker,
                                      initargs=(self.config.cpus_per_cell, os.getpid()))

    def __enter__(self) -> LocalExecutor:
        """Keep one pool (and its warm workers) for every ``map`` until the block ends."""
        self._kept = self._pool(self.workers)
        return self

    def __exit__(self, *exc: Any) -> None:
        kept, self._kept = getattr(self, "_kept", None), None
        if kept is not None:
            kept.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        items = list(items)
        if not items:
            return
        kept = getattr(self, "_kept", None)
        pool = kept or self._pool(len(items))
        try:
            futures = {pool.submit(call_guarded, fn, item): item for item in items}
            for future in cf.as_completed(futures):
                try:
                    value = future.result()[1]
                except Exception as exc:  # noqa: BLE001 - a worker died (segfault, out of memory)
                    value = exc
                yield futures[future], value
        finally:
            if pool is not kept:
                pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class RayConfig:
    """``address``: an existing cluster (``auto``, ``ray://host:10001``), empty: start Ray here with
    ``num_cpus`` CPUs (0: all); ``cpus_per_cell``: CPUs (and threads) per job. A Ray already started in
    this process (``ray.init(...)``) is used as it is."""

    address: str = ""
    num_cpus: int = 0
    cpus_per_cell: int = 1


class RayExecutor(Executor):
    """Ray tasks on a local Ray or an existing cluster (the ``ray`` extra)."""

    Config = RayConfig

    def __init__(self, config: RayConfig) -> None:
        if not ray_available():
            raise CompatibilityError(RAY_MISSING)
        if config.cpus_per_cell < 1:
            raise ConfigError("must be at least 1", key="executor.cpus_per_cell")
        self.config = config

    def _start(self) -> bool:
        """Start Ray (or join the cluster) unless this process already did; whether it was started here."""
        import ray

        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.config.address:
            options["address"] = self.config.address
        elif self.config.num_cpus:
            options["num_cpus"] = self.config.num_cpus
        ray.init(**options)
        return True

    @property
    def workers(self) -> int:
        """CPUs of the cluster // cpus_per_cell (Ray must be started)."""
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)) // self.config.cpus_per_cell)

    def __enter__(self) -> RayExecutor:
        """Keep Ray up for every ``map`` until the block ends (shut down then, if it was started here)."""
        self._started = self._start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "_started", False):
            import ray

            ray.shutdown()
        self._started = False

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        items = list(items)
        if not items:
            return
        import ray

        started = self._start()
        threads = str(self.config.cpus_per_cell)
        task = ray.remote(call_guarded).options(
            num_cpus=self.config.cpus_per_cell, max_retries=0,
            runtime_env={"env_vars": {var: threads for var in THREAD_VARS}})
        try:
            pending = {task.remote(fn, item): item for item in items}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    try:
                        value = ray.get(ref)[1]
                    except Exception as exc:  # noqa: BLE001 - the worker died
                        value = getattr(exc, "cause", None) or exc
                    yield item, value
        finally:
            if started:
                ray.shutdown()


__all__ = ["LocalExecutor", "RAY_MISSING", "RayExecutor", "call_guarded", "ray_available"]
