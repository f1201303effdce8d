"""Running a grid: compose and validate every cell, claim the grid folder, write each cell's folder,
compute the shared stages once, run the cells on an executor, report as they start and end.

``GRID/`` (claimed as kind ``grid``, ``esgkit.core.outputs``) holds ``grid.json`` (the spec and the cell
list), ``cells/<hash>/`` (``cells.py``), ``cache/masks/`` (the ``masks`` stage, shared by every cell;
``cache/stages.json`` its work summed over every run of the grid),
``summary.json`` and the report (``report.py``, written when the grid ends). ``resume``: done cells are skipped (never recomputed),
running (killed) and failed ones start again, a training cell from its own newest checkpoint.

Each cell runs in a worker process and writes its own ``status.json``, so a ``kill -9`` of the grid
process loses only the running cells' work since their last checkpoint (the workers exit with it).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esgkit.core import Executor
from esgkit.core.errors import ConfigError, InputError, OutputError
from esgkit.core.pipeline import with_weights
from esgkit.core.json_input import read_state
from esgkit.core.outputs import atomic_write, atomic_write_json, check_folder, claim_folder

from .cells import digest, identity, is_done, read_status, resolved_config, update_status, write_status
from .spec import CellPlan, EvalData, GridSpec, check_rows, compose
from .stages import StageJob, masks_stage_key, run_stage, stage_jobs


@dataclass
class CellJob:
    """Everything a worker needs to run one cell (picklable)."""

    folder: str
    label: str
    config: dict[str, Any]
    do: tuple[str, ...]
    on: EvalData
    cache: str
    masks_identity: dict[str, Any] | None = None  # the segmenter whose masks a stage job stored (built only on a miss)
    run_id: str = ""  # a worker reuses a dataset reader within one grid run only


def run_job(job: CellJob | StageJob) -> dict[str, Any]:
    """The function the executor runs: a stage job or a cell."""
    import os

    from esgkit.core.runtime import configure_threads

    configure_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    return run_stage(job) if isinstance(job, StageJob) else run_cell(job)


def _train(job: CellJob, folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Train the cell (resuming from its own newest checkpoint); returns the config naming the weights."""
    from esgkit.layers.weights import latest_checkpoint
    from esgkit.training.run import train

    done = read_state(folder / "train_summary.json")
    if done is None:
        run = folder / "train"
        last = latest_checkpoint(run) if (run / "checkpoints").is_dir() else None
        if last is not None:
            update_status(folder, resumed_from=last.name)
            print(f"resuming training from {last}")
        summary = train(config, job.on.data, run, resume=True, progress=False)
        done = {"weights": summary.get("weights"), "step": summary.get("step"), "steps": summary.get("steps"),
                "seconds": summary.get("seconds"), "resumed_from": last.name if last is not None else None}
        atomic_write_json(folder / "train_summary.json", done)
    return with_weights(config, str(done["weights"])) if done.get("weights") else config


_DATASETS: dict[tuple[str, str], Any] = {}


def _dataset(job: CellJob) -> Any:
    """The cell's dataset reader, built once per worker process and grid run: cells that follow each
    other in a worker share its parsed annotations."""
    key = (job.run_id, json.dumps(job.on.identity(), sort_keys=True, default=str))
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = job.on.build()
    return _DATASETS[key]


def _evaluate(job: CellJob, folder: Path, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from esgkit.core import build_pipeline, get_registry
    from esgkit.evaluation.run import evaluate
    from esgkit.pipelines.segment_cache import CachedSegmenter, cached_segmenter

    dataset = _dataset(job) if job.run_id else job.on.build()
    prebuilt: dict[str, Any] = {}
    if job.masks_identity is not None:  # its masks are stored: read them, build the segmenter only on a miss
        section = dict(config["segmenter"])
        prebuilt["segmenter"] = CachedSegmenter(None, job.masks_identity, job.cache, build=lambda: get_registry().build(
            "segmenter", section, key="segmenter"))  # type: ignore[arg-type, return-value]
    pipeline = build_pipeline(config, prebuilt=prebuilt)
    cache: dict[str, Any] = {"hits": 0, "misses": 0}
    if getattr(pipeline, "segmenter", None) is not None and not prebuilt:
        pipeline.segmenter = cached_segmenter(pipeline.segmenter, job.cache)  # type: ignore[attr-defined]
    metrics = evaluate(pipeline, dataset, folder / "eval", max_images=job.on.max_images, skip=set(job.on.skip),
                       progress=False)
    for name, options in (job.on.subsets or {}).items():
        part = evaluate(pipeline, job.on.build(options), folder / f"eval_{name}", max_images=job.on.max_images,
                        skip=set(job.on.skip), progress=False)
        metrics |= {f"{name}/{k}": v for k, v in part.items()}
    seg = getattr(pipeline, "segmenter", None)
    if isinstance(seg, CachedSegmenter):
        cache = {"hits": seg.hits, "misses": seg.misses, "folder": str(seg.folder), "segmenter_built": seg.built}
    return metrics, cache


def run_cell(job: CellJob) -> dict[str, Any]:
    """Run one cell in its folder (status, log, metrics); raises what the cell raised, after recording it."""
    folder = Path(job.folder)
    start = time.time()
    status = write_status(folder, "running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    with open(folder / "log.txt", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        print(f"=== attempt {status['attempts']} of cell {folder.name} ({job.label}), pid {status['pid']}", flush=True)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("default")
                config = dict(job.config)
                if "train" in job.do:
                    config = _train(job, folder, config)
                metrics: dict[str, Any] = {}
                cache: dict[str, Any] = {"hits": 0, "misses": 0}
                if "eval" in job.do:
                    metrics, cache = _evaluate(job, folder, config)
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
            result = {"label": job.label, "metrics": clean, "cache": cache, "seconds": round(time.time() - start, 3)}
            atomic_write_json(folder / "metrics.json", result)
            write_status(folder, "done", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), seconds=result["seconds"])
            print(f"=== done in {result['seconds']:.1f} s", flush=True)
            return result
        except BaseException as exc:
            traceback.print_exc()
            write_status(folder, "failed", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         seconds=round(time.time() - start, 3), error=f"{type(exc).__name__}: {exc}")
            raise


# --------------------------------------------------------------------------- the grid process


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _what(spec: GridSpec) -> dict[str, Any]:
    """What a cell does and on which data: the part of its identity beside its config."""
    return {"do": list(spec.do), **spec.on.identity()}


def cell_folders(out: Path, spec: GridSpec, cells: list[CellPlan]) -> dict[int, Path]:
    """Each cell's folder: ``cells/<hash of its identity>``."""
    return {c.index: out / "cells" / digest(identity(c.config, _what(spec))) for c in cells}


def resolved_hashes(spec: GridSpec, cells: list[CellPlan]) -> dict[int, str]:
    """Each cell's hash over its resolved config (``resolved_config``: defaults filled in), which
    ``--reuse`` also matches on: a cell that spells out a default is the same computation as one that
    does not, though its folder (the hash of the config as composed) differs."""
    return {c.index: digest(identity(resolved_config(c.config), _what(spec))) for c in cells}


def prepare(out: Path, spec: GridSpec, cells: list[CellPlan], folders: dict[int, Path], resume: bool,
            overwrite: bool, resolved: dict[int, str] | None = None) -> None:
    """Claim the grid folder and write grid.json and each cell's config, cell.json and status."""
    manifest = check_folder(out, "grid", overwrite)
    started = [f for f in folders.values() if (f / "status.json").is_file() and read_status(f)["state"] != "pending"]
    if manifest is not None and not resume and started:
        raise OutputError(f"--out {out} already holds a run of this grid ({len(started)} cells started or done); add "
                          "--resume to continue it (done cells are kept), or give another folder")
    grid = claim_folder(out, "grid", overwrite)
    from omegaconf import OmegaConf

    for cell in cells:
        folder = folders[cell.index]
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "config.yaml").is_file():
            atomic_write(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cell.config)))
        atomic_write_json(folder / "cell.json", {"index": cell.index, "label": cell.label, "row": cell.row,
                                                 "seed": cell.seed, "choices": cell.choices,
                                                 "overrides": cell.overrides,
                                                 "resolved": (resolved or {}).get(cell.index)})
        if not (folder / "status.json").is_file():
            write_status(folder, "pending")
    atomic_write_json(out / "grid.json", {
        "name": spec.name, "spec": spec.raw, "base": spec.base, "do": list(spec.do), "data": spec.on.data,
        "metrics": spec.metrics, "paper": spec.paper, "baseline": spec.baseline, "seeds": spec.seeds,
        "cells": [{"index": c.index, "folder": folders[c.index].name, "label": c.label, "row": c.row, "seed": c.seed,
                   "choices": c.choices} for c in cells]})
    grid.record("grid.json", "cells", "cache", "summary.json")


class _Watcher:
    """Prints a line when a cell starts (its status turns ``running``), from the cells' status files."""

    def __init__(self, jobs: dict[str, CellJob], write: Any) -> None:
        self.jobs, self.write, self.seen = jobs, write, {}
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="esgkit-grid-watch")

    def _loop(self) -> None:
        while not self.stop.wait(0.3):
            self.poll()

    def poll(self) -> None:
        with self.lock:
            self._poll()

    def _poll(self) -> None:
        for name, job in self.jobs.items():
            status = read_status(Path(job.folder))
            mark = (status.get("attempts"), status.get("pid"))
            if status["state"] == "running" and self.seen.get(name) != mark:
                self.seen[name] = mark
                resumed = f", resuming from {status['resumed_from']}" if status.get("resumed_from") else ""
                self.write(f"[start] cell {name} {job.label} (pid {status.get('pid')}{resumed})")


def _wait_for_orphans(folders: dict[int, Path], timeout: float = 5.0) -> None:
    """Give a worker of a killed grid (a cell still ``running`` here, its process alive) a moment to exit:
    workers watch their parent and leave within a second of its death."""
    import os
    import socket

    def alive(folder: Path) -> bool:
        status = read_status(folder)
        if status["state"] != "running" or status.get("host") != socket.gethostname() or not status.get("pid"):
            return False
        try:
            os.kill(int(status["pid"]), 0)
        except (ProcessLookupError, PermissionError, ValueError, OverflowError):
            return False
        return int(status["pid"]) != os.getpid()

    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(f) for f in folders.values()):
        time.sleep(0.2)


REUSED_FILES = ("metrics.json", "train_summary.json", "log.txt")  # what a reused cell's folder gets besides its status


def _done_by_resolved(source: Path) -> dict[str, Path]:
    """A grid folder's done cells by the resolved hash their cell.json records (cells written before
    esgkit recorded it have none)."""
    found = {}
    for folder in sorted((source / "cells").glob("*")):
        resolved = (read_state(folder / "cell.json") or {}).get("resolved")
        if resolved and is_done(folder):
            found.setdefault(str(resolved), folder)
    return found


def reuse_cells(folders: dict[int, Path], sources: list[Path], resolved: dict[int, str] | None = None
                ) -> dict[Path, Path]:
    """Take each not-yet-done cell that a ``sources`` grid (or its export) has done under the same hash —
    the same config (as composed, or as resolved: ``resolved`` by cell index), data, steps, esgkit
    version and weights, so the same computation — by copying its metrics, log and status
    (``reused_from`` names the source); returns {cell: source}."""
    import shutil

    taken: dict[Path, Path] = {}
    by_resolved = [_done_by_resolved(source) for source in sources] if resolved else [{} for _ in sources]
    for index, folder in folders.items():
        if is_done(folder):
            continue
        for source, alike in zip(sources, by_resolved):
            other = source / "cells" / folder.name
            if not is_done(other) and resolved and resolved.get(index) in alike:
                other = alike[resolved[index]]
            if other.resolve() == folder.resolve() or not is_done(other):
                continue
            for name in REUSED_FILES:
                if (other / name).is_file():
                    shutil.copyfile(other / name, folder / name)
            status = read_status(other)
            write_status(folder, "done", **{k: status.get(k) for k in ("started", "finished", "seconds", "attempts")
                                            if k in status}, reused_from=str(other))
            taken[folder] = other
            break
    return taken


def run_grid(spec: GridSpec, out: str | Path, executor: Executor, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True, reuse: list[str | Path] | None = None,
             rows: list[str] | None = None) -> dict[str, Any]:
    """Run a grid (module docstring); returns the summary (also written to ``GRID/summary.json``).
    ``reuse``: other grid folders (or exports) whose done cells of the same hash are taken, not rerun.
    ``rows``: run only these rows' cells (every seed of each); the others stay pending for a later run."""
    out = Path(out)
    check_folder(out, "grid", overwrite)  # refuse the user's folder before composing anything
    check_rows(spec, [("--rows", r) for r in rows or []])  # a misspelt row is refused before composing
    cells = compose(spec)  # every cell valid, or a ConfigError naming each bad one: nothing has run
    folders = cell_folders(out, spec, cells)
    first: dict[Path, CellPlan] = {}
    for c in cells:
        other = first.setdefault(folders[c.index], c)
        if other is not c:
            raise ConfigError(f"grid spec {spec.source or spec.name}: cells {other.index} ({other.label}) and {c.index} "
                              f"({c.label}) resolve to the same config; give each axis value once")
    sources = [Path(r) for r in reuse or []]
    for source in sources:
        if not (source / "grid.json").is_file():
            raise InputError(f"--reuse {source}: not a grid folder or export (no grid.json); give the --out of "
                             "another `esgkit grid` run or an `esgkit grid export` folder")
    resolved = resolved_hashes(spec, cells)
    prepare(out, spec, cells, folders, resume, overwrite, resolved)
    _wait_for_orphans(folders)
    reuse_cells(folders, sources, resolved)
    keep = executor if hasattr(executor, "__enter__") else contextlib.nullcontext()
    with keep:  # one pool (one Ray) for the stage jobs and the cells
        return _run(spec, out, executor, cells, folders, progress, set(rows or ()))


def _run(spec: GridSpec, out: Path, executor: Executor, cells: list[CellPlan], folders: dict[int, Path],
         progress: bool, rows: set[str]) -> dict[str, Any]:
    from tqdm.auto import tqdm

    start = time.time()
    cache = str(out / "cache" / "masks")
    skipped = [c for c in cells if is_done(folders[c.index])]
    left = {c.index for c in cells if rows and c.row not in rows and not is_done(folders[c.index])}
    todo = [c for c in cells if not is_done(folders[c.index]) and c.index not in left]
    jobs = {folders[c.index].name: CellJob(str(folders[c.index]), c.label, c.config, spec.do, spec.on, cache)
            for c in todo}
    write = tqdm.write if progress else (lambda line: print(line, file=sys.stderr, flush=True))
    for c in skipped:
        source = read_status(folders[c.index]).get("reused_from")
        write(f"[skip] cell {folders[c.index].name} {c.label}: " + (f"done in {source}" if source else
                                                                    "done in an earlier run"))
    stage = {"hits": 0, "misses": 0, "jobs": 0, "seconds": 0.0}
    stage_start = time.time()
    identities: dict[str, dict[str, Any]] = {}  # masks stage key → the segmenter that stored them
    if todo and "train" not in spec.do:
        images = len(spec.on.build().take(spec.on.max_images))
        try:
            workers = int(getattr(executor, "workers", 0) or 1)
        except Exception:  # noqa: BLE001 - an executor that cannot say: one chunk per segmenter
            workers = 1
        sjobs = stage_jobs([c.config for c in todo], spec.on, images, cache, workers)
        if sjobs:
            write(f"[stage] masks: {len({j.key for j in sjobs})} segmenter(s) on {images} images, {len(sjobs)} jobs")
        for job, result in executor.map(run_job, sjobs):
            if isinstance(result, BaseException):  # the cells will meet (and report) the same error
                write(f"[stage] masks job failed: {_error_text(result)}")
                continue
            stage["hits"] += result["hits"]
            stage["misses"] += result["misses"]
            stage["jobs"] += 1
            if result.get("identity"):
                identities[result["key"]] = result["identity"]
        stage["seconds"] = round(time.time() - stage_start, 3)
    run_id = f"{out.resolve()}:{start}"
    for job in jobs.values():
        job.masks_identity, job.run_id = identities.get(masks_stage_key(job.config) or ""), run_id
    results: dict[str, Any] = {}
    bar = tqdm(total=len(todo), unit="cell", desc="grid", disable=not progress, file=sys.stderr)
    watcher = _Watcher(jobs, write)
    watcher.thread.start()
    try:
        for job, result in executor.map(run_job, list(jobs.values())):
            watcher.poll()
            name = Path(job.folder).name
            if isinstance(result, BaseException):
                results[name] = {"state": "failed", "error": _error_text(result)}
                write(f"[FAILED] cell {name} {job.label}: {_error_text(result)} (log: {job.folder}/log.txt)")
            else:
                results[name] = {"state": "done", **result}
                shown = ", ".join(f"{k}={v:.4f}" for k, v in list(result["metrics"].items())[:3] if isinstance(v, float))
                write(f"[done] cell {name} {job.label} in {result['seconds']:.1f} s {shown}")
            bar.update(1)
    finally:
        watcher.stop.set()
        bar.close()
    summary = summarize(out, cells, folders, add_stage_totals(out, stage), time.time() - start, len(skipped), left)
    atomic_write_json(out / "summary.json", summary)
    from .report import write_report

    summary["report"] = [str(p) for p in write_report(out)]
    return summary


def add_stage_totals(out: Path, stage: dict[str, Any]) -> dict[str, Any]:
    """Add this run's stage work to the grid's totals (``cache/stages.json``) and return them: the cells'
    own counts live in their folders and survive a ``--resume``, and so must the stage's."""
    path = out / "cache" / "stages.json"
    stored = read_state(path) or {}
    totals = {k: stored.get(k, 0) + stage.get(k, 0) for k in ("jobs", "hits", "misses", "seconds")}
    if stage.get("jobs"):
        atomic_write_json(path, totals)
    return totals


def summarize(out: Path, cells: list[CellPlan], folders: dict[int, Path], stage: dict[str, Any], seconds: float,
              skipped: int, left: set[int] | None = None) -> dict[str, Any]:
    """The grid's summary.json; ``stage`` holds the masks stage's totals over every run of the grid;
    ``left``: the indices of the cells this run was told not to run (``--rows``), not counted as failed."""
    rows, failed = [], []
    hits, misses, reused = stage["hits"], stage["misses"], 0
    for c in cells:
        status = read_status(folders[c.index])
        metrics = read_state(folders[c.index] / "metrics.json") or {}
        cache = metrics.get("cache") or {}
        reused += bool(status.get("reused_from"))
        if status["state"] == "done" and metrics and not status.get("reused_from"):  # its source counted those
            hits += int(cache.get("hits", 0))
            misses += int(cache.get("misses", 0))
        rows.append({"cell": folders[c.index].name, "label": c.label, "state": status["state"],
                     "seconds": status.get("seconds"), "error": status.get("error")})
        if status["state"] != "done" and c.index not in (left or ()):
            failed.append(rows[-1])
    return {"grid": str(out), "cells": rows, "done": sum(r["state"] == "done" for r in rows),
            "failed": [{"cell": r["cell"], "label": r["label"], "error": r["error"]} for r in failed],
            "skipped_done": skipped, "left": len(left or ()), "reused": reused, "seconds": round(seconds, 3),
            "cache": {"masks_hits": hits, "masks_misses": misses, "stage_jobs": stage["jobs"],
                      "stage_misses": stage["misses"], "stage_seconds": round(stage["seconds"], 3)}}


def describe(summary: dict[str, Any]) -> str:
    cache = summary["cache"]
    lines = [f"grid {summary['grid']}: {summary['done']}/{len(summary['cells'])} cells done "
             f"({summary['skipped_done']} from an earlier run) in {summary['seconds']:.1f} s; masks cache: "
             f"{cache['masks_misses']} misses (segmented), {cache['masks_hits']} hits (reused)"]
    if summary.get("left"):
        lines.append(f"  {summary['left']} cells of other rows left pending (--rows); `--resume` without it runs them")
    for f in summary["failed"]:
        lines.append(f"  not done: cell {f['cell']} {f['label']}: {f['error'] or 'not run'}")
    return "\n".join(lines)


__all__ = ["CellJob", "cell_folders", "describe", "prepare", "reuse_cells", "run_cell", "run_grid", "run_job",
           "summarize"]
