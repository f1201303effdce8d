"""The shipped grid specs (experiments/tables/): every cell of every spec composes and validates (the
check `esgkit grid` runs before any cell), and every row of a spec's ``paper:`` block names a row the
grid has — a typo there would silently leave the paper's column empty."""

from __future__ import annotations

from pathlib import Path

import pytest
from esgkit.experiments.grid import compose, load_spec

TABLES = sorted((Path(__file__).resolve().parents[2] / "experiments" / "tables").glob("*.yaml"))


def test_the_tables_folder_is_found():
    assert len(TABLES) >= 10, TABLES


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.stem)
def test_every_cell_validates_and_the_papers_rows_exist(path, tiny_shapesworld):
    spec = load_spec(path, data=str(tiny_shapesworld))
    cells = compose(spec)
    assert cells, f"{path.name}: no cells"
    rows = {cell.row for cell in cells}
    assert len(rows) * max(1, len(spec.seeds or [])) == len(cells), f"{path.name}: rows repeat"
    unknown = set(spec.paper) - rows
    assert not unknown, f"{path.name}: paper rows {sorted(unknown)} are not rows of the grid ({sorted(rows)})"
    assert f"esgkit grid experiments/tables/{path.name}" in path.read_text(), f"{path.name}: give the command"
