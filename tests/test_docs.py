"""Docs that run: every fenced block of the README, docs/, the model cards and the package READMEs is
executed here, in document order, in a scratch folder per document.

* ``bash``: each command (``\\``-continued lines joined) must exit 0. A plain ``esgkit …`` line runs
  in this process through ``esgkit.core.cli.main``, the function the ``esgkit`` script calls (saving a
  fresh interpreter's imports per command); a line with shell syntax runs in bash with ``esgkit`` on
  the PATH. Sizes are shrunk where the command as written would take minutes (``TINY``): fewer
  and smaller ShapesWorld images, one training step, one evaluated image — the command is otherwise
  the one the reader sees.
* ``python``: executed in one namespace per document (later blocks see earlier ones).
* ``yaml``: loaded with OmegaConf; a pipeline config is validated section by section against the
  registry, a grid spec (``base:`` and ``grid:``/``zip:``) cell by cell; ``toml`` is parsed.
* ``text``: output or a file tree, not run. Every block must say its language.

A block preceded by ``<!-- doc-test: file NAME -->`` is also written to ``NAME`` in the scratch
folder (a config the next commands use); ``<!-- doc-test: each KIND -->`` marks a YAML list of
alternative config sections of that kind, each validated; ``<!-- doc-test: skip: REASON -->`` skips
it, saying why. A YAML mapping that is no whole config has each top-level section validated as the
component kind it names.
Inputs the docs name are made first: ``photo.png`` (a real photo from scikit-image), ``scene.png``
and ``masks.png`` (a ShapesWorld scene and its entity id-map).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "models").glob("*/README.md"),
               REPO / "components" / "llms" / "README.md", REPO / "examples" / "esgkit-skimage" / "README.md"])
LANGUAGES = ("bash", "python", "yaml", "toml", "text")

# (pattern, replacement) applied to bash commands: what would take minutes runs tiny.
TINY = [
    (r"--images \d+", "--images 2"),
    (r"--size \d+x\d+", "--size 96x96"),
    (r"^(esgkit (?:train) .*?)(\s*#.*)?$", r"\1 train.steps=1 train.time_budget_min=0 train.batch_size=2 "
                                           "train.checkpoint_every=1 \"train.val_split=''\" train.max_images=2\\2"),
    (r"^(esgkit (?:eval) .*?)(\s*#.*)?$", r"\1 --max-images 1 --no-progress\2"),
]


@dataclass
class Block:
    doc: Path
    line: int
    language: str
    code: str
    skip: str | None = None
    file: str | None = None
    each: str | None = None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the doc-test marker of the line before each."""
    lines = doc.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = lines[start - 1].strip() if start else ""
        skip = re.match(r"<!-- doc-test: skip: (.+?) -->", marker)
        file = re.match(r"<!-- doc-test: file (\S+) -->", marker)
        each = re.match(r"<!-- doc-test: each (\S+) -->", marker)
        found.append(Block(doc, start + 1, m.group(1), "\n".join(lines[start + 1:end]) + "\n",
                           skip.group(1) if skip else None, file.group(1) if file else None,
                           each.group(1) if each else None))
        i = end + 1
    return found


def commands(code: str) -> list[str]:
    """Shell commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    out, current = [], ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append((current + line).strip())
        current = ""
    return out


def tiny(command: str) -> str:
    for pattern, replacement in TINY:
        command = re.sub(pattern, replacement, command)
    return command


def run_command(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one command of a doc. A plain ``esgkit …`` line runs in this process through the entry point's
    own function (``esgkit.core.cli.main``, what the ``esgkit`` script calls): the same code without a
    fresh interpreter's seconds of imports per command. Anything with shell syntax runs in bash."""
    if command.startswith("esgkit ") and not set(command.split("#")[0]) & set("|&;<>$`"):
        import torch

        from esgkit.core.cli import main

        out, err, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(shlex.split(command, comments=True)[1:])
            except SystemExit as stop:  # argparse's exits
                code = stop.code if isinstance(stop.code, int) else 1
            finally:
                torch.set_num_threads(threads)  # main sets the process's threads (env vars it restores itself)
        return code, out.getvalue(), err.getvalue()
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, photo):
    """The files the docs' commands name, made once."""
    from esgkit.core.io import save_id_map_png, save_image
    from esgkit.datasets.shapesworld import ShapesWorldDataset, generate

    folder = tmp_path_factory.mktemp("doc_inputs")
    save_image(folder / "photo.png", photo)
    root = generate(folder / "scene", images=1, seed=0, size="128x128", split="demo", image_format="png")
    sample = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(root), split="demo"))[0]
    save_image(folder / "scene.png", sample["image"])
    masks = sample["masks"]
    id_map = (masks.masks * masks.ids[:, None, None]).max(0)
    save_id_map_png(folder / "masks.png", id_map)
    shutil.rmtree(folder / "scene")
    return folder


def test_every_block_says_its_language():
    bad = [b.where for doc in DOCS for b in blocks(doc) if b.language not in LANGUAGES]
    assert not bad, f"fenced blocks without a known language ({', '.join(LANGUAGES)}): {bad}"


def test_the_tiny_rules_shrink_what_they_should():
    assert tiny("esgkit data shapesworld d --images 200 --size 512x512 --split val") == \
        "esgkit data shapesworld d --images 2 --size 96x96 --split val"
    assert tiny("esgkit eval x --data d --out m.json   # note").startswith("esgkit eval x --data d --out m.json --max-images 1")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_doc_runs(doc, inputs, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from esgkit.core import get_registry
    from esgkit.core.config import load_config
    from esgkit.core.pipeline import validate_pipeline_config

    registry = get_registry()
    for f in inputs.iterdir():
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    module = types.ModuleType(f"doc_{doc.stem}")  # a real module: dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ran = 0
    for block in blocks(doc):
        if block.skip or block.language == "text":
            continue
        if block.file:
            (tmp_path / block.file).write_text(block.code)
        if block.language == "bash":
            for command in commands(block.code):
                run = tiny(command)
                code, out, err = run_command(run, tmp_path, env)
                assert code == 0, f"{block.where}: `{run}` failed:\n{out[-2000:]}\n{err[-3000:]}"
                ran += 1
        elif block.language == "python":
            exec(compile(block.code, block.where, "exec"), module.__dict__)  # noqa: S102 - the docs' own examples
            ran += 1
        elif block.language == "yaml":
            config = OmegaConf.create(block.code)
            if block.each:
                for k, section in enumerate(config):
                    registry.validated(block.each, section, f"{block.where} item {k}")
            elif "base" in config and ("grid" in config or "zip" in config):  # an `esgkit grid` spec: every cell
                from esgkit.experiments.grid import compose, parse_spec

                compose(parse_spec(OmegaConf.to_container(config), tmp_path))
            elif "pipeline" in config or "defaults" in config:
                path = tmp_path / (block.file or "doc_block.yaml")
                path.write_text(block.code)
                validate_pipeline_config(load_config(str(path)))
            else:
                for kind, section in config.items():
                    registry.validated(str(kind), section, str(kind))
            ran += 1
        elif block.language == "toml":
            tomllib.loads(block.code)
            ran += 1
    if not ran:
        pytest.skip(f"{doc.relative_to(REPO)} has no runnable block")
