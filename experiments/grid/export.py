"""``esgkit grid export DIR DEST``: a grid's results without its trainings and predictions.

A grid of trained cells holds gigabytes of checkpoints and prediction files; what its table needs is
small: ``grid.json`` (the spec and the cells), each cell's ``config.yaml``, ``cell.json``,
``status.json`` and ``metrics.json``, the report, and the shared stage's counts (``cache/stages.json``;
the stored masks stay behind). The export copies exactly those, so DEST can be
committed or sent, ``esgkit grid report DEST`` rewrites its table, and ``esgkit grid SPEC --out DEST
--resume`` finishes its cells that are not done (a done cell is never recomputed; one that was
running starts over, since its checkpoints stay behind).
"""

from __future__ import annotations

from pathlib import Path

from esgkit.core.errors import InputError
from esgkit.core.json_input import read_state
from esgkit.core.outputs import atomic_write, claim_folder

# cache/stages.json: the shared stage's work over every run, which a --resume from the export adds to
GRID_FILES = ("grid.json", "summary.json", "report.md", "report.csv", "cache/stages.json")
CELL_FILES = ("config.yaml", "cell.json", "status.json", "metrics.json")


def export_grid(grid_dir: str | Path, dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy the table-making files of the grid in ``grid_dir`` to ``dest`` (a new folder, or one of
    ``kind`` grid); returns the files written. InputError when ``grid_dir`` is no grid folder."""
    src, out = Path(grid_dir), Path(dest)
    grid = read_state(src / "grid.json")
    if grid is None:
        raise InputError(f"grid folder {src}: no readable grid.json; give a folder written by `esgkit grid`")
    if out.resolve() == src.resolve():
        raise InputError(f"esgkit grid export: DEST {out} is the grid folder itself; give another folder")
    folder = claim_folder(out, "grid", overwrite, option="DEST")
    names = [Path(n) for n in GRID_FILES if (src / n).is_file()]
    names += sorted(p.relative_to(src) for p in (src / "plots").glob("*.png"))
    for cell in grid["cells"]:
        folder_name = Path("cells") / cell["folder"]
        names += [folder_name / n for n in CELL_FILES if (src / folder_name / n).is_file()]
    written = [atomic_write(out / name, (src / name).read_bytes()) for name in names]
    folder.record("grid.json", "cells", "cache", "summary.json", "report.md", "report.csv", "plots")
    return written


__all__ = ["export_grid"]
