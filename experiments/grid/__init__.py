"""Ablation grids as config swaps (``esgkit grid``): the spec (``spec.py``), cell folders and status
(``cells.py``), the stage cache (``stages.py``), running (``run.py``), the report (``report.py``), the
export of a grid's results without its trainings (``export.py``) and the command line (``cli.py``).
See docs/grids.md.

The names below are imported on first use: registering the ``grid`` command (``cli.py``, loaded by
every ``esgkit`` call) must not import OmegaConf or torch (``esgkit list`` stays fast)."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"compose": "spec", "load_spec": "spec", "parse_spec": "spec", "run_grid": "run", "write_report": "report",
          "export_grid": "export"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["compose", "export_grid", "load_spec", "parse_spec", "run_grid", "write_report"]
