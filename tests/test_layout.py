"""The layout's promises: one-way layers and independent component kinds (import-linter contracts in
pyproject.toml), no import cycle between modules, no source file over 500 lines — each checked on the
real tree, and the contract check shown to fail when an import breaks it on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("core", "layers", "components", "pipelines", "datasets", "evaluation", "training", "experiments",
               "ui", "models")


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # the console script's own call, through this interpreter (`python -m importlinter.cli` runs nothing, and a
    # virtualenv that sees import-linter in the system site-packages has no `lint-imports` of its own)
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                                 "sys.argv[0] = 'lint-imports'; sys.exit(lint_imports_command())"]
    return subprocess.run([*cmd, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_import_contracts_are_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("components/colorizers/colorizers.py", "import esgkit.training.trainer", "One-way layers"),
    ("pipelines/colormap.py", "from esgkit.training.run import train", "One-way layers"),
    ("components/segmenters/annotations.py", "import esgkit.components.fusers.resoblend", "Component kinds"),
], ids=["component-imports-training", "pipeline-imports-training", "kind-imports-kind"])
def test_an_import_that_breaks_a_contract_fails_the_check(tmp_path, module, line, contract):
    """A copy of the package with one forbidden import added: lint-imports must fail and name it."""
    package = tmp_path / "esgkit"
    package.mkdir()
    shutil.copy(REPO / "__init__.py", package / "__init__.py")
    shutil.copy(REPO / "builtin.py", package / "builtin.py")
    for folder in SOURCE_DIRS:
        shutil.copytree(REPO / folder, package / folder, ignore=shutil.ignore_patterns("*.safetensors", "*.png",
                                                                                       "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = package / module
    target.write_text(target.read_text() + f"\n{line}  # broken on purpose\n")
    result = lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    out = result.stdout
    assert "1 broken" in out and f"{contract}" in out, out
    importer = "esgkit." + module.removesuffix(".py").replace("/", ".")
    assert importer in out, out


def test_no_import_cycle_between_modules():
    """For every direct import a → b, b must not lead back to a (lazy and TYPE_CHECKING imports count)."""
    import grimp

    graph = grimp.build_graph("esgkit")
    cycles = [graph.find_shortest_chain(importer=b, imported=a)
              for a in sorted(graph.modules) for b in graph.find_modules_directly_imported_by(a)
              if graph.chain_exists(importer=b, imported=a)]
    assert not cycles, cycles


def test_no_source_file_over_500_lines():
    files = [REPO / "__init__.py", REPO / "builtin.py", *(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))]
    long = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
