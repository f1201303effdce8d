"""The registry: kind and interface checks, duplicates, unknown names, plugin isolation."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from esgkit.core import (
    ConfigError, EntityMasks, PluginError, Registry,
    RegistryError, Segmenter, UnknownComponentError, hookimpl,
)
from esgkit import builtin


class EchoSegmenter(Segmenter):
    """Returns the annotation."""

    @dataclass
    class Config:
        gain: float = 1.0

    def __init__(self, config):
        self.config = config

    def segment(self, image, annotation=None, image_id=None):
        return annotation


def make_plugin(name, *regs, fail=False):
    class Plugin:
        @staticmethod
        @hookimpl
        def esgkit_register_components(register):
            for r in regs:
                register(*r)
            if fail:
                raise RuntimeError("boom in register")

    return Plugin


class FakeEntryPoint:
    def __init__(self, name, target, dist="fake-dist", version="9.9"):
        self.name, self._target = name, target
        self.dist = SimpleNamespace(name=dist, version=version)

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def fresh(entry_points=()):
    reg = Registry()
    reg.load_plugins(builtin, entry_points=list(entry_points))
    return reg


def test_register_checks_kind_and_interface():
    reg = Registry()
    with pytest.raises(RegistryError, match="unknown kind 'segmentr'"):
        reg.register("segmentr", "x", EchoSegmenter, origin="me")
    with pytest.raises(RegistryError, match="does not implement esgkit.core.Colorizer"):
        reg.register("colorizer", "x", EchoSegmenter, origin="me")
    with pytest.raises(RegistryError, match="module:Class"):
        reg.register("segmenter", "x", "no_colon_here", origin="me")
    reg.register("segmenter", "echo", EchoSegmenter, origin="me")
    assert reg.get("segmenter", "echo") is EchoSegmenter


def test_duplicate_names_both_origins():
    reg = fresh([FakeEntryPoint("p1", make_plugin("p1", ("segmenter", "ground_truth", EchoSegmenter)))])
    info = reg.plugins["p1"]
    assert "registered twice" in info.error and "esgkit.builtin" in info.error and "p1" in info.error


def test_unknown_name_suggests_and_names_key():
    reg = fresh()
    with pytest.raises(UnknownComponentError) as err:
        reg.build("segmenter", {"name": "ground_truht"}, key="segmenter")
    msg = str(err.value)
    assert "segmenter.name='ground_truht'" in msg and "'ground_truth'" in msg and "esgkit list segmenter" in msg
    assert isinstance(err.value, ConfigError) and err.value.key == "segmenter.name"


def test_lazy_factory_is_checked_when_resolved():
    reg = Registry()
    reg.register("colorizer", "wrong", "esgkit.components.segmenters.annotations:GroundTruthSegmenter", origin="me")
    with pytest.raises(RegistryError, match="does not implement esgkit.core.Colorizer"):
        reg.get("colorizer", "wrong")
    reg.register("colorizer", "missing", "esgkit.nowhere:Thing", origin="me")
    with pytest.raises(RegistryError, match="cannot be imported"):
        reg.get("colorizer", "missing")


def test_broken_plugin_is_skipped_and_reported():
    good = FakeEntryPoint("good", make_plugin("good", ("segmenter", "echo", EchoSegmenter)))
    bad = FakeEntryPoint("bad", ImportError("no module named totally_missing"), dist="esgkit-bad", version="0.3")
    half = FakeEntryPoint("half", make_plugin("half", ("segmenter", "half_done", EchoSegmenter), fail=True))
    with pytest.warns(UserWarning, match="esgkit-bad 0.3"):
        reg = fresh([good, bad, half])
    assert "echo" in reg.names("segmenter")
    assert "half_done" not in reg.names("segmenter")  # partial registrations are rolled back
    assert reg.plugins["bad"].error.startswith("ImportError") and reg.plugins["bad"].version == "0.3"
    assert "boom in register" in reg.plugins["half"].error
    assert reg.plugins["good"].components == ["segmenter:echo"]


def test_strict_mode_raises_naming_plugin(monkeypatch):
    monkeypatch.setenv("ESGKIT_STRICT_PLUGINS", "1")
    bad = FakeEntryPoint("bad", ImportError("nope"), dist="esgkit-bad", version="0.3")
    with pytest.raises(PluginError, match="plugin 'bad' \\(esgkit-bad 0.3\\) failed to load"):
        fresh([bad])


def test_allow_and_block_lists(monkeypatch):
    eps = [FakeEntryPoint("a", make_plugin("a", ("segmenter", "seg_a", EchoSegmenter))),
           FakeEntryPoint("b", make_plugin("b", ("segmenter", "seg_b", EchoSegmenter)))]
    monkeypatch.setenv("ESGKIT_PLUGINS", "a")
    assert set(fresh(eps).plugins) == {"esgkit.builtin", "a"}
    monkeypatch.setenv("ESGKIT_PLUGINS", "")
    assert set(fresh(eps).plugins) == {"esgkit.builtin"}
    monkeypatch.delenv("ESGKIT_PLUGINS")
    monkeypatch.setenv("ESGKIT_DISABLE_PLUGINS", "b")
    assert set(fresh(eps).plugins) == {"esgkit.builtin", "a"}


def test_list_with_wildcards():
    reg = fresh()
    assert reg.names("segmenter", "ground*") == ["ground_truth"]
    assert reg.names("colorizer", "*cat*") == ["location"]
    with pytest.raises(RegistryError, match="Did you mean 'segmenter'"):
        reg.names("segmenters")


def test_build_wraps_constructor_errors_with_key():
    class Exploding(Segmenter):
        @dataclass
        class Config:
            pass

        def __init__(self, config):
            raise ValueError("weights missing")

        def segment(self, image, annotation=None, image_id=None):
            return EntityMasks.empty(1, 1)

    reg = Registry()
    reg.register("segmenter", "boom", Exploding, origin="me")
    with pytest.raises(RegistryError, match=r"building segmenter \(segmenter 'boom'\) failed: ValueError: weights missing"):
        reg.build("segmenter", {"name": "boom"})
    _ = np  # numpy imported for EntityMasks


def make_command_plugin(name, fail=False):
    class Plugin:
        @staticmethod
        @hookimpl
        def esgkit_register_commands(subparsers):
            p = subparsers.add_parser(f"{name}-cmd", help="a plugin command")
            p.set_defaults(func=lambda args: 0)
            if fail:
                raise RuntimeError("boom in commands")

    return Plugin


def _parser(reg):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    reg.register_commands(sub)
    return sub


def test_a_broken_command_hook_is_isolated_and_reported():
    eps = [FakeEntryPoint("good", make_command_plugin("good")),
           FakeEntryPoint("bad", make_command_plugin("bad", fail=True), dist="esgkit-bad", version="0.3")]
    reg = fresh(eps)
    with pytest.warns(UserWarning, match=r"plugin 'bad' \(esgkit-bad 0.3\) could not add its commands"):
        sub = _parser(reg)
    assert "good-cmd" in sub.choices and "list" in sub.choices  # the others stay
    assert "bad-cmd" not in sub.choices  # its half-added command is removed
    assert "boom in commands" in reg.plugins["bad"].command_error
    assert reg.plugins["bad"].error is None  # its components still load


def test_a_broken_command_hook_fails_in_strict_mode(monkeypatch):
    reg = fresh([FakeEntryPoint("bad", make_command_plugin("bad", fail=True))])
    monkeypatch.setenv("ESGKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'bad'.*could not add its commands: RuntimeError: boom"):
        _parser(reg)


def test_a_misspelled_hook_is_reported_with_the_right_name():
    class Misspelled:
        @staticmethod
        @hookimpl
        def esgkit_register_component(register):  # missing "s": would silently never run
            register("segmenter", "never", EchoSegmenter)

    with pytest.warns(UserWarning, match="esgkit_register_component"):
        reg = fresh([FakeEntryPoint("typo", Misspelled)])
    assert "did you mean 'esgkit_register_components'" in reg.plugins["typo"].error
    assert "never" not in reg.names("segmenter")


def test_a_plugin_ships_configs_that_load_by_name(tmp_path):
    (tmp_path / "mine.yaml").write_text("pipeline: {name: colormap}\nsegmenter: {name: ground_truth}\n"
                                        "colorizer: {name: random}\n")

    class Configs:
        @staticmethod
        @hookimpl
        def esgkit_config_dirs():
            return [str(tmp_path)]

    from esgkit.core.config import load_config

    reg = fresh([FakeEntryPoint("cfgs", Configs)])
    assert reg.config_dirs[-1] == tmp_path and reg.plugins["cfgs"].config_dirs == [str(tmp_path)]
    assert load_config("mine", search=reg.config_dirs).segmenter.name == "ground_truth"


def test_every_entry_lists_a_one_line_description():
    reg = fresh()
    for kind in reg.kinds:
        for name in reg.names(kind):
            desc = reg.entry(kind, name).description
            assert desc and "\n" not in desc and "no description" not in desc, (kind, name)
    reg.register("colorizer", "lazy_one", "somewhere.module:Thing", origin="me")
    assert reg.entry("colorizer", "lazy_one").description == "(lazy somewhere.module:Thing; no description given)"
