"""``esgkit grid SPEC.yaml --out DIR`` (run an ablation grid) and ``esgkit grid report DIR`` (its table
and plots). See docs/grids.md."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any


def add_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    p = subparsers.add_parser(
        "grid", help="run an ablation grid of config swaps (cached, resumable; local processes or Ray), or "
                     "`esgkit grid report DIR`",
        description="Every cell of the spec is composed and validated before any runs. Cells live in "
                    "DIR/cells/<hash>/ (config, status.json, log, metrics); the segmenter's masks are computed once "
                    "per image and shared by every cell (DIR/cache/masks). See docs/grids.md.")
    p.add_argument("target", nargs="+", metavar="SPEC | report DIR | export DIR DEST",
                   help="a grid spec (YAML); `report DIR` to (re)write the report of a grid folder; `export DIR "
                        "DEST` to copy its table-making files (spec, cell configs, status, metrics, report) "
                        "without the trainings and predictions, to commit, report or --resume later")
    p.add_argument("--out", help="the grid folder (default: <spec name>_grid in the current folder)")
    p.add_argument("--resume", action="store_true", help="continue the grid in --out: done cells are skipped, "
                                                         "interrupted and failed ones run again")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out (export: DEST) even if it holds other files")
    p.add_argument("--executor", help="where cells run: local (default) or ray (esgkit list executor)")
    p.add_argument("--address", help="ray: the cluster to join (auto, ray://host:10001); default: start Ray here")
    p.add_argument("--workers", type=int, help="local: cells at once (default: cores // cpus-per-cell)")
    p.add_argument("--cpus-per-cell", type=int, help="CPU threads (and Ray CPUs) per cell (default 1)")
    p.add_argument("--data", help="the dataset folder, replacing the spec's data:")
    p.add_argument("--reuse", action="append", metavar="DIR", default=[],
                   help="another grid folder or export whose done cells of the same hash (same config, data and "
                        "steps) this grid takes instead of running them again (repeatable)")
    p.add_argument("--rows", action="append", metavar="LABEL",
                   help="run only this row's cells, every seed (its label as in the report, e.g. "
                        "'colormap_encoder=swin_tiny'; repeatable); the other rows stay pending for a later --resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the per-cell lines stay)")
    p.set_defaults(func=cmd_grid)


def make_executor(spec_executor: dict[str, Any], name: str | None = None, **options: Any) -> Any:
    """The executor the spec's ``executor:`` block and the command-line options name (default ``local``)."""
    from esgkit.core import get_registry
    from esgkit.core.errors import CompatibilityError, ConfigError

    from ..executors import RAY_MISSING, ray_available

    registry = get_registry()
    section = dict(spec_executor)
    if name and name != section.get("name"):
        section = {"name": name}
    section.setdefault("name", "local")
    if section["name"] == "ray" and "ray" not in registry.names("executor") and not ray_available():
        raise CompatibilityError(RAY_MISSING)
    fields = {f.name for f in dataclasses.fields(registry.get("executor", str(section["name"]), "executor.name").Config)}
    for key, value in options.items():
        if value is None:
            continue
        if key not in fields:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"executor {section['name']!r} takes no option {flag} (its options: "
                              f"{', '.join(sorted(fields)) or 'none'})", key=f"executor.{key}")
        section[key] = value
    return registry.build("executor", section, key="executor")


def cmd_grid(args: argparse.Namespace) -> int:
    from esgkit.core.errors import InputError

    from .export import export_grid
    from .report import write_report
    from .run import describe, run_grid
    from .spec import load_spec

    if args.target[0] == "report" and not Path("report").is_file():
        if len(args.target) != 2:
            raise InputError("esgkit grid report DIR: give one grid folder")
        for path in write_report(args.target[1]):
            print(f"wrote {path}")
        return 0
    if args.target[0] == "export" and not Path("export").is_file():
        if len(args.target) != 3:
            raise InputError("esgkit grid export DIR DEST: give the grid folder and the folder to copy it to")
        written = export_grid(args.target[1], args.target[2], overwrite=args.overwrite)
        print(f"wrote {len(written)} files to {args.target[2]} (no trainings or predictions)")
        return 0
    if len(args.target) != 1:
        raise InputError(f"esgkit grid: give one spec file (got {' '.join(args.target)}); or `esgkit grid report DIR` "
                         "or `esgkit grid export DIR DEST`")
    spec_path = Path(args.target[0])
    spec = load_spec(spec_path, data=args.data)
    out = Path(args.out) if args.out else Path(f"{spec_path.stem}_grid")
    executor = make_executor(spec.executor, args.executor, address=args.address, workers=args.workers,
                             cpus_per_cell=args.cpus_per_cell)
    summary = run_grid(spec, out, executor, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress, reuse=args.reuse, rows=args.rows)
    print(describe(summary))
    print(f"wrote {out / 'summary.json'}, {out / 'report.md'}, {out / 'report.csv'} and {out / 'plots'}/")
    return 1 if summary["failed"] else 0


__all__ = ["add_commands", "make_executor"]
