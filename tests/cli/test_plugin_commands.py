"""Plugin commands that clash: a third-party command named like a built-in (``run``) or like an
earlier plugin's is not added, the clash names both plugins, and every other command keeps working.
The plugins are real installed distributions (a ``.dist-info`` with an ``esgkit`` entry point on the
path), found the way ``pip install`` would make them found."""

from __future__ import annotations

import itertools
import os
import sys
import textwrap

import numpy as np
import pytest

import esgkit.core.registry as registry_module
from esgkit.core.cli import build_parser, main
from esgkit.core.io import save_id_map_png, save_image

_COUNTER = itertools.count()

ADDS_RUN_AND_HELLO = """
    p = subparsers.add_parser("run", help="{name}'s run")
    p.add_argument("--everything")
    p.set_defaults(func=lambda args: print("{name} run") or 0)
    p = subparsers.add_parser("hello", help="{name}'s hello")
    p.set_defaults(func=lambda args: print("{name} hello") or 0)
"""
ADDS_HELLO = """
    p = subparsers.add_parser("hello", help="{name}'s hello")
    p.set_defaults(func=lambda args: print("{name} hello") or 0)
"""
REPLACES_LIST = """
    import argparse
    subparsers.choices["list"] = argparse.ArgumentParser(prog="{name} list")  # behind argparse's back
"""


def install(site, name: str, body: str) -> str:
    """A distribution ``esgkit-NAME 1.0`` whose entry point ``NAME`` adds commands with ``body``."""
    module = f"esgkit_cmdtest_{name}_{next(_COUNTER)}"
    dist = site / f"esgkit_{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: esgkit-{name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[esgkit]\n{name} = {module}\n")
    hook = textwrap.indent(textwrap.dedent(body.format(name=name)).strip(), "    ")
    (site / f"{module}.py").write_text("from esgkit.core import hookimpl\n\n\n@hookimpl\n"
                                       f"def esgkit_register_commands(subparsers):\n{hook}\n")
    return module


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Install plugins by ``{entry-point name: hook body}``; the registry is rebuilt with them
    (and put back afterwards)."""
    site = tmp_path / "site"
    site.mkdir()
    modules = []

    def make(**bodies: str) -> dict[str, str]:
        for name, body in bodies.items():
            modules.append(install(site, name, body))
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setattr(registry_module, "_REGISTRY", None)
        return {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err, out.err
    return rc, out.out, out.err


CLASH_RUN = "plugin 'alpha' (esgkit-alpha 1.0) could not add its commands: command 'run' is already registered by esgkit.builtin"


def test_a_plugin_command_named_like_a_builtin_is_not_added(plugins, capsys, tmp_path):
    plugins(alpha=ADDS_RUN_AND_HELLO)
    rc, out, err = cli(capsys, "list", "colorizer")
    assert rc == 0 and "random" in out
    assert f"esgkit: warning: esgkit {CLASH_RUN}; it is skipped" in err
    rc, out, _ = cli(capsys, "plugins")
    assert rc == 0
    assert "alpha (esgkit-alpha 1.0): commands FAILED\n    error: command 'run' is already registered by esgkit.builtin" in out
    assert "esgkit.builtin: ok" in out
    info = registry_module.get_registry().plugins["alpha"]
    assert info.commands == ["hello"] and "run" in registry_module.get_registry().plugins["esgkit.builtin"].commands
    rc, out, _ = cli(capsys, "hello")  # the plugin's other command is kept
    assert rc == 0 and out.strip() == "alpha hello"

    image = tmp_path / "scene.png"  # `esgkit run` is still the built-in one
    save_image(image, np.zeros((16, 16, 3), np.uint8))
    ids = np.zeros((16, 16), np.int64)
    ids[2:8, 2:8] = 1
    save_id_map_png(tmp_path / "masks.png", ids)
    rc, out, _ = cli(capsys, "run", "colormap", "--image", image, "--masks", tmp_path / "masks.png",
                     "--out", tmp_path / "out")
    assert rc == 0 and "colormap.png" in out and "alpha run" not in out


def test_two_plugins_adding_one_command_the_second_is_reported(plugins, capsys):
    plugins(alpha=ADDS_HELLO, beta=ADDS_HELLO)
    rc, out, err = cli(capsys, "hello")
    assert rc == 0 and out.strip() == "alpha hello"  # plugins load in name order: alpha's stays
    assert ("plugin 'beta' (esgkit-beta 1.0) could not add its commands: command 'hello' is already registered by "
            "alpha; it is skipped") in err
    rc, out, _ = cli(capsys, "plugins")
    assert "alpha (esgkit-alpha 1.0): ok" in out
    assert "beta (esgkit-beta 1.0): commands FAILED\n    error: command 'hello' is already registered by alpha" in out


def test_a_command_replaced_behind_argparse_back_is_restored(plugins, capsys):
    plugins(gamma=REPLACES_LIST)
    rc, out, err = cli(capsys, "list", "colorizer")
    assert rc == 0 and "random" in out  # the built-in parser, not gamma's
    assert "command 'list' is already registered by esgkit.builtin" in err
    with pytest.warns(UserWarning, match="command 'list' is already registered"):
        help_text = build_parser().format_help()
    assert help_text.count("list registered components") == 1, help_text  # its help line once, not twice


def test_strict_mode_makes_a_clash_an_error(plugins, capsys, monkeypatch):
    plugins(alpha=ADDS_RUN_AND_HELLO)
    monkeypatch.setenv("ESGKIT_STRICT_PLUGINS", "1")
    rc, _, err = cli(capsys, "list")
    assert rc == 2
    assert f"esgkit: error: {CLASH_RUN} (unset ESGKIT_STRICT_PLUGINS to skip it, or ESGKIT_DISABLE_PLUGINS=alpha" in err


def test_clash_from_an_installed_distribution_in_a_fresh_interpreter(plugins, cli):
    """As a user meets it: `esgkit` run in a new process finds the distribution by its metadata."""
    env = plugins(alpha=ADDS_RUN_AND_HELLO)
    res = cli("list", "colorizer", env=env)
    assert res.returncode == 0 and "random" in res.stdout, res.stderr
    assert CLASH_RUN in res.stderr and "Traceback" not in res.stderr
    res = cli("list", env={**env, "ESGKIT_STRICT_PLUGINS": "1"})
    assert res.returncode == 2 and CLASH_RUN in res.stderr and "Traceback" not in res.stderr
