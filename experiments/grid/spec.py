"""A grid spec (YAML): a base pipeline config, the axes that vary it, and what each cell does.

::

    base: esg_tiny                 # a config name (esgkit config list) or a YAML path (relative to the spec)
    overrides: [pipeline.mask_size=128]   # applied to every cell, before the axes
    do: eval                       # or [train, eval]
    data: data/sw                  # the dataset folder (relative to the spec); --data replaces it
    dataset: shapesworld           # reader (esgkit list dataset); split: val; max_images: 0 (all)
    skip: [nouns, res]             # parts of the pipeline's predictions not to run (esgkit eval --skip)
    subsets: {relational: {expressions: relational}}  # also evaluate on these dataset options (metrics "relational/cIoU")
    grid:                          # the product of these axes
      pipeline.threshold: [0.3, 0.5]          # values (named by themselves)
      associator: {FC: {name: fc, dim: 64}, MLP: {name: mlp, dim: 64}}   # named values
    zip:                           # paired values: one axis per group, the lists walked together
      - {names: [small, large], label: size, mask_decoder.num_queries: [16, 32], pipeline.mask_size: [64, 128]}
    seeds: [0, 1]                  # an axis too; the value goes to seed_key (default train.seed)
    seed_key: train.seed
    metrics: [AR, acc@0.5]         # the columns of the report (default: every metric)
    paper: {"threshold=0.5": {AR: 0.52}}   # optional: the paper's numbers beside ours, by row label
    baseline: "threshold=0.5"      # optional: the row the report compares every other row with (default: the first)
    executor: {name: local, workers: 2}    # optional: the default executor and its options

Every cell's config is composed (``load_config`` with the cell's overrides) and validated
(``validate_pipeline_config``, the checks of ``esgkit config show``, plus the ``train:`` section when the
cell trains) by ``compose`` before anything runs; every bad cell is named in one ConfigError.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esgkit.core import load_config
from esgkit.core.errors import ConfigError, EsgkitError, close_matches
from esgkit.core.pipeline import validate_pipeline_config
from esgkit.core.schema import to_container

KEYS = {"base", "overrides", "do", "data", "dataset", "split", "max_images", "skip", "subsets", "grid", "zip",
        "seeds", "seed_key", "metrics", "paper", "baseline", "executor", "name"}
STEPS = ("train", "eval")


@dataclass
class Axis:
    """One axis: the dotted keys it sets and its values, each with a name (the label in the table)."""

    keys: tuple[str, ...]
    names: list[str]
    values: list[tuple[Any, ...]]  # per name, one value per key
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or "+".join(k.rsplit(".", 1)[-1] for k in self.keys)


@dataclass
class CellPlan:
    """A cell before it runs: its label (the table row, without the seed), seed, overrides and resolved config."""

    index: int
    row: str
    seed: Any
    choices: dict[str, str]
    overrides: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.row if self.seed is None else f"{self.row} seed={self.seed}"


@dataclass
class EvalData:
    """What a cell trains and evaluates on (as ``esgkit eval`` takes it): the dataset folder, its reader
    (``esgkit list dataset``), the split, the first ``max_images`` images (0: all), the parts not predicted,
    and named ``subsets``: reader options under which each cell is evaluated again (``{relational:
    {expressions: relational}}``), their metrics reported as ``relational/cIoU``."""

    data: str
    dataset: str = "shapesworld"
    split: str = "val"
    max_images: int = 0
    skip: list[str] = field(default_factory=list)
    subsets: dict[str, dict[str, Any]] | None = None

    def build(self, options: Mapping[str, Any] | None = None) -> Any:
        """The dataset reader of this split (with a subset's reader ``options``)."""
        from esgkit.core import get_registry

        return get_registry().build("dataset", {"name": self.dataset, "root": self.data, "split": self.split,
                                                **(options or {})}, key="dataset")

    def identity(self) -> dict[str, Any]:
        """What of it makes a cell another cell (part of the cell hash; subsets only when there are some,
        so the cells of a spec without them keep their hashes)."""
        out = {"data": self.data, "dataset": self.dataset, "split": self.split, "max_images": self.max_images,
               "skip": sorted(self.skip)}
        return out | {"subsets": self.subsets} if self.subsets else out


@dataclass
class GridSpec:
    base: str
    overrides: list[str]
    do: tuple[str, ...]
    on: EvalData
    axes: list[Axis]
    seeds: list[Any] | None
    seed_key: str
    metrics: list[str]
    paper: dict[str, dict[str, float]]
    executor: dict[str, Any]
    baseline: str | None = None  # the report's reference row (report.differences); None: the first row
    name: str = "grid"
    folder: Path = Path(".")
    source: str = ""  # the spec file, for messages
    raw: dict[str, Any] = field(default_factory=dict)


def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _axis(key: str, values: Any) -> Axis:
    if isinstance(values, Mapping):
        if not values:
            raise ConfigError("an axis needs at least one value", key=f"grid.{key}")
        return Axis((key,), [str(n) for n in values], [(v,) for v in values.values()])
    if isinstance(values, Sequence) and not isinstance(values, str) and values:
        return Axis((key,), [_value_text(v) for v in values], [(v,) for v in values])
    raise ConfigError("an axis is a list of values or a mapping {name: value}", key=f"grid.{key}")


def _zip_axis(k: int, group: Any) -> Axis:
    where = f"zip[{k}]"
    if not isinstance(group, Mapping) or not group:
        raise ConfigError("a zip group is a mapping {key: [values], ..., names: [...]}", key=where)
    group = dict(group)
    names = group.pop("names", None)
    label = str(group.pop("label", ""))  # the column title in the table (default: the keys' last parts)
    lengths = {key: len(v) if isinstance(v, Sequence) and not isinstance(v, str) else -1 for key, v in group.items()}
    bad = [key for key, n in lengths.items() if n < 1]
    if bad:
        raise ConfigError("a zip value must be a non-empty list", key=f"{where}.{bad[0]}")
    if len(set(lengths.values())) != 1:
        raise ConfigError(f"the lists of a zip group must have one length (got {lengths})", key=where)
    n = next(iter(lengths.values()))
    keys = tuple(group)
    values = [tuple(group[key][i] for key in keys) for i in range(n)]
    if names is None:
        names = ["/".join(_value_text(v) for v in row) for row in values]
    elif not isinstance(names, Sequence) or isinstance(names, str) or len(names) != n:
        raise ConfigError(f"names must be a list of {n} names, one per value", key=f"{where}.names")
    return Axis(keys, [str(x) for x in names], values, label)


def _list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise ConfigError("must be a list", key=key)


def load_spec(path: str | Path, data: str | None = None) -> GridSpec:
    """Read and check a grid spec file (not its cells: ``compose`` does that)."""
    from esgkit.core import config_guard as guard

    path = Path(path)
    raw = guard.parse_yaml(guard.read_config_text(path, "grid spec"), str(path))
    if not isinstance(raw, dict):
        raise ConfigError(f"grid spec {path}: must be a mapping (base:, grid:, ...); see docs/grids.md")
    spec = parse_spec(raw, path.parent, data)
    spec.source = str(path)
    if "name" not in raw:  # the report's title: the spec file's name
        spec.name = path.stem
    return spec


def parse_spec(raw: Mapping[str, Any], folder: str | Path = ".", data: str | None = None) -> GridSpec:
    folder = Path(folder)
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"not a grid spec key{_did_you_mean(unknown[0], KEYS)} (keys: "
                          f"{', '.join(sorted(KEYS))})", key=unknown[0])
    if "base" not in raw:
        raise ConfigError("missing: the pipeline config every cell starts from (a name or a YAML path)", key="base")
    base = str(raw["base"])
    if (folder / base).is_file():
        base = str((folder / base).resolve())
    do = tuple(_list(raw.get("do", "eval"), "do"))
    if not do or any(s not in STEPS for s in do) or list(do) not in (["eval"], ["train", "eval"], ["train"]):
        raise ConfigError(f"must be eval, [train, eval] or train (got {list(do)})", key="do")
    given = data if data is not None else raw.get("data")
    if given is None:
        raise ConfigError("missing: the dataset folder the cells run on (or give --data)", key="data")
    data_path = Path(str(given)).expanduser()
    data_path = data_path if data_path.is_absolute() or data is not None else folder / data_path
    grid = raw.get("grid") or {}
    if not isinstance(grid, Mapping):
        raise ConfigError("must be a mapping {dotted.key: [values] or {name: value}}", key="grid")
    axes = [_axis(str(k), v) for k, v in grid.items()]
    axes += [_zip_axis(k, g) for k, g in enumerate(_list(raw.get("zip"), "zip"))]
    seeds = raw.get("seeds")
    if seeds is not None:
        seeds = _list(seeds, "seeds")
        if not seeds:
            raise ConfigError("give at least one seed, or leave seeds out", key="seeds")
    executor = raw.get("executor") or {}
    if isinstance(executor, str):
        executor = {"name": executor}
    if not isinstance(executor, Mapping):
        raise ConfigError("must be a name or {name: local, ...options}", key="executor")
    paper = raw.get("paper") or {}
    if not isinstance(paper, Mapping) or not all(isinstance(v, Mapping) for v in paper.values()):
        raise ConfigError("must map a row label to {metric: value}", key="paper")
    subsets = raw.get("subsets") or {}
    if not isinstance(subsets, Mapping) or not all(isinstance(v, Mapping) and v for v in subsets.values()):
        raise ConfigError("must map a name to the dataset reader's options, e.g. {relational: {expressions: "
                          "relational}}", key="subsets")
    spec = GridSpec(base=base, overrides=[str(o) for o in _list(raw.get("overrides"), "overrides")], do=do,
                    on=EvalData(str(data_path.resolve()), str(raw.get("dataset", "shapesworld")),
                                str(raw.get("split", "val")), int(raw.get("max_images", 0) or 0),
                                [str(s) for s in _list(raw.get("skip"), "skip")],
                                {str(k): dict(v) for k, v in subsets.items()} or None), axes=axes, seeds=seeds,
                    seed_key=str(raw.get("seed_key", "train.seed")),
                    metrics=[str(m) for m in _list(raw.get("metrics"), "metrics")],
                    paper={str(k): {str(m): float(x) for m, x in v.items()} for k, v in paper.items()},
                    executor=dict(executor), name=str(raw.get("name", "grid")), folder=folder, raw=dict(raw),
                    baseline=None if raw.get("baseline") is None else str(raw["baseline"]))
    _check_row_labels(spec)
    return spec


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    hint = close_matches(word, candidates, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def _check_row_labels(spec: GridSpec) -> None:
    """``paper:`` and ``baseline:`` name rows by label; a label no row has would silently drop its numbers."""
    named = [("baseline", spec.baseline)] if spec.baseline is not None else []
    check_rows(spec, named + [(f"paper.{k}", k) for k in spec.paper])


def check_rows(spec: GridSpec, named: Iterable[tuple[str, str]]) -> None:
    """Refuse each ``(where, label)`` whose label is no row of the grid, with the closest row."""
    rows = list(dict.fromkeys(c.row for c in plan(spec)))
    for key, label in named:
        if label not in rows:
            raise ConfigError(f"no row is labelled {label!r}{_did_you_mean(label, rows)} "
                              f"(rows: {', '.join(rows)})", key=key)


def plan(spec: GridSpec) -> list[CellPlan]:
    """Every cell of the grid, in order: seed by seed, the product of the axes — a grid stopped early has
    whole tables at its first seeds, not every seed of its first rows."""
    cells = []
    seeds = spec.seeds if spec.seeds is not None else [None]
    combos = list(itertools.product(*(range(len(a.names)) for a in spec.axes)))
    for index, (seed, combo) in enumerate(itertools.product(seeds, combos)):
        overrides, choices = list(spec.overrides), {}
        for axis, i in zip(spec.axes, combo):
            choices[axis.title] = axis.names[i]
            overrides += [f"{key}={json.dumps(value)}" for key, value in zip(axis.keys, axis.values[i])]
        if seed is not None:
            overrides.append(f"{spec.seed_key}={json.dumps(seed)}")
        row = " ".join(f"{k}={v}" for k, v in choices.items()) or "base"
        cells.append(CellPlan(index, row, seed, choices, overrides))
    return cells


def _check_cell(spec: GridSpec, cell: CellPlan) -> None:
    config = load_config(spec.base, cell.overrides)
    validate_pipeline_config(config)
    cell.config = to_container(config)
    if "train" in spec.do:
        from esgkit.core import get_registry
        from esgkit.training.config import split_train_section
        from esgkit.training.run import task_name

        cls = get_registry().get("task", task_name(cell.config), "train.task")
        split_train_section(cell.config.get("train") or {}, cls.Config)


def compose(spec: GridSpec) -> list[CellPlan]:
    """Plan and validate every cell; one ConfigError naming each bad cell and its key, before anything runs."""
    cells = plan(spec)
    for name, options in (spec.on.subsets or {}).items():
        try:
            spec.on.build(options)
        except EsgkitError as exc:
            raise ConfigError(f"subset {name!r} {options}: {exc}", key=f"subsets.{name}") from exc
    problems = []
    for cell in cells:
        try:
            _check_cell(spec, cell)
        except EsgkitError as exc:
            problems.append((cell, exc))
    if problems:
        lines = [f"cell {c.index} ({c.label}): {exc}" for c, exc in problems]
        error = ConfigError(f"grid spec {spec.source or spec.name}: {len(problems)} of {len(cells)} cells are invalid, so none was run:\n  "
                            + "\n  ".join(lines) + "\nfix the spec's axes or overrides (`esgkit config show BASE "
                            "KEY=VALUE ...` checks one cell)")
        error.key = getattr(problems[0][1], "key", None)  # the first bad key, for callers (not repeated in the text)
        error.cells = [c.label for c, _ in problems]  # type: ignore[attr-defined]
        raise error
    return cells


__all__ = ["Axis", "CellPlan", "EvalData", "GridSpec", "check_rows", "compose", "load_spec", "parse_spec", "plan"]
