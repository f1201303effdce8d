"""The config sandbox (``esgkit.core.config`` + ``config_guard``): where ``defaults`` may come from,
which environment variables ``${oc.env:...}`` may read, bounds on size/nesting/expansion, and
property tests that random bytes, YAML and overrides give a config or a ConfigError, nothing else."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from fuzzing import FUZZ
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from esgkit.core.config import CONFIG_PATH_VAR, load_config
from esgkit.core.config_guard import ENV_ALLOW_VAR, MAX_CONFIG_DEPTH
from esgkit.core.errors import ConfigError

SECRET = "s3cr3t-do-not-print"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """``tmp/project/cfg`` (configs) beside ``tmp/private`` (a file configs must not reach)."""
    monkeypatch.delenv(CONFIG_PATH_VAR, raising=False)
    monkeypatch.delenv(ENV_ALLOW_VAR, raising=False)
    cfg, private = tmp_path / "project" / "cfg", tmp_path / "private"
    (cfg / "parts").mkdir(parents=True)
    private.mkdir()
    (private / "secret.yaml").write_text(f"token: {SECRET}\n")
    (private / "passwd").write_text(f"root:{SECRET}:0:0\n")
    (cfg / "parts" / "seg.yaml").write_text("segmenter: {name: ground_truth}\n")
    return cfg, private


def write(folder, text, name="main.yaml"):
    path = folder / name
    path.write_text(text)
    return path


def refused(ref, *needles, overrides=(), **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(ref, list(overrides), **kwargs)
    message = str(info.value)
    assert SECRET not in message
    for needle in needles:
        assert needle in message, message
    return message


# ------------------------------------------------------------------------------- defaults


def test_defaults_from_the_config_folder_and_shipped_names_work(tree):
    cfg, _ = tree
    loaded = load_config(write(cfg, "defaults: [colormap, parts/seg.yaml]\ncolorizer: {seed: 3}\n"))
    assert loaded.segmenter.name == "ground_truth" and loaded.colorizer.seed == 3


@pytest.mark.parametrize("entry", ["../../private/secret.yaml", "../../private/passwd", "/etc/passwd"])
def test_defaults_outside_the_config_folder_are_refused_without_echo(tree, entry):
    cfg, private = tree
    if entry.startswith("/"):
        entry = str(private / "secret.yaml")
    refused(write(cfg, f"defaults: [{entry}]\n"), "main.yaml", "defaults entry", CONFIG_PATH_VAR)


def test_a_symlink_out_of_the_folder_is_refused(tree):
    cfg, private = tree
    (cfg / "link.yaml").symlink_to(private / "secret.yaml")
    refused(write(cfg, "defaults: [link.yaml]\n"), "points outside")


def test_a_default_that_is_not_yaml_is_refused(tree):
    cfg, _ = tree
    (cfg / "notes.txt").write_text(f"{SECRET}\n")
    refused(write(cfg, "defaults: [notes.txt]\n"), "notes.txt", "not a .yaml/.yml file")


def test_the_search_path_is_an_explicit_way_out(tree, monkeypatch):
    cfg, private = tree
    main = write(cfg, "defaults: [secret]\n")
    refused(main, "'secret'", "not found")
    monkeypatch.setenv(CONFIG_PATH_VAR, str(private))
    assert load_config(main).token == SECRET
    monkeypatch.delenv(CONFIG_PATH_VAR)
    assert load_config(main, search=[private]).token == SECRET


@pytest.mark.parametrize("defaults", ["5", "[{a: 1}]", "{a: b}", "['']"])
def test_defaults_of_the_wrong_type_name_the_file(tree, defaults):
    cfg, _ = tree
    refused(write(cfg, f"defaults: {defaults}\n"), "main.yaml", "defaults")


# ------------------------------------------------------------------------------- resolvers


def test_oc_env_reads_only_allowed_variables(tree, monkeypatch):
    cfg, _ = tree
    monkeypatch.setenv("ESGKIT_TEST_SECRET", SECRET)
    main = write(cfg, "defaults: [colormap]\ncolorizer: {note: '${oc.env:ESGKIT_TEST_SECRET}'}\n")
    refused(main, "colorizer.note", "ESGKIT_TEST_SECRET", ENV_ALLOW_VAR)
    refused("colormap", "ESGKIT_TEST_SECRET", overrides=["colorizer.note=${oc.env:ESGKIT_TEST_SECRET}"])
    monkeypatch.setenv(ENV_ALLOW_VAR, "OTHER, ESGKIT_TEST_SECRET")
    assert load_config(main).colorizer.note == SECRET
    monkeypatch.setenv("ESGKIT_TEST_INDIRECT", "${oc.env:ESGKIT_TEST_SECRET}")  # decoding text from outside
    monkeypatch.setenv(ENV_ALLOW_VAR, "ESGKIT_TEST_INDIRECT")
    refused(write(cfg, "a: ${oc.decode:${oc.env:ESGKIT_TEST_INDIRECT}}\n"), "a:", "literal values only")


def test_the_stock_resolvers_are_back_after_loading(tree, monkeypatch):
    monkeypatch.setenv("ESGKIT_TEST_SECRET", "visible")
    with pytest.raises(ConfigError):
        load_config("colormap", ["colorizer.note=${oc.env:ESGKIT_TEST_SECRET}"])
    assert OmegaConf.create({"x": "${oc.env:ESGKIT_TEST_SECRET}"}).x == "visible"  # other users unaffected


def test_an_allowed_value_holding_an_interpolation_stays_text(tree, monkeypatch):
    cfg, _ = tree
    monkeypatch.setenv("ESGKIT_TEST_VALUE", "${oc.env:HOME}")
    monkeypatch.setenv(ENV_ALLOW_VAR, "ESGKIT_TEST_VALUE")
    loaded = load_config(write(cfg, "x: '${oc.env:ESGKIT_TEST_VALUE}'\ny: '\\${literal}'\n"))
    resolved = OmegaConf.to_container(loaded, resolve=True)  # resolved again, outside the guard
    assert resolved == {"x": "${oc.env:HOME}", "y": "${literal}"}


@pytest.mark.parametrize("text, needle", [
    ("a: ${b}\nb: ${a}\n", "recursive interpolation"),
    ("a: ${nowhere}\n", "does not exist"),
    ("k: b\na: ${${k}}\nb: 1\n", "interpolation whose key"),
    ("a: ${python.eval:1}\n", "no resolver"),
    ("a: ${oc.env:}\n", ""),
])
def test_interpolation_errors_name_the_key(tree, text, needle):
    cfg, _ = tree
    message = refused(write(cfg, text), needle)
    assert "a" in message


def test_interpolations_that_multiply_are_refused_before_resolving(tree):
    cfg, _ = tree
    lines = ["v0: xxxxxxxxxxxxxxxx"] + [f"v{i}: ${{v{i - 1}}}${{v{i - 1}}}" for i in range(1, 40)]
    refused(write(cfg, "\n".join(lines) + "\n"), "expand")


# ------------------------------------------------------------------------------- size and shape


def test_billion_laughs_and_deep_nesting_are_refused(tree):
    cfg, _ = tree
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    refused(write(cfg, "\n".join(lines) + "\n"), "aliases")
    refused(write(cfg, "a: " + "[" * 5000 + "]" * 5000 + "\n"), f"nested more than {MAX_CONFIG_DEPTH}")
    refused("colormap", f"nested more than {MAX_CONFIG_DEPTH}", overrides=["a=" + "[" * 500 + "]" * 500])


def test_big_binary_and_special_files_are_refused(tree):
    cfg, _ = tree
    big = cfg / "big.yaml"
    with open(big, "w") as f:
        f.write("a: 1\n")
        f.truncate(5 * 2**20)
    refused(big, "larger than")
    assert load_config(write(cfg, "", name="empty.yaml")) == {}  # an empty file is an empty config
    (cfg / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    refused(cfg / "bin.yaml", "UTF-8")
    (cfg / "dir.yaml").mkdir()
    refused(cfg / "dir.yaml", "folder")
    refused(write(cfg, "- 1\n- 2\n"), "mapping at the top level")
    refused(write(cfg, f"a: !!python/object/apply:os.system ['echo {SECRET}']\n"), "tag")


@pytest.mark.parametrize("override, needle", [
    ("=5", "the key is empty"), ("segmenter..name=sam", "doubled dot"), (".name=sam", "starts with a dot"),
    ("name.=sam", "ends with a dot"), ("seg menter=1", "whitespace"), ("a$b=1", "'$'"), ("noequals", "key=value"),
    ("~nowhere", "no such key"), ("~colorizer=1", "takes no value"),
])
def test_bad_overrides_name_the_override(override, needle):
    refused("colormap", needle, overrides=[override])


def test_deleting_then_setting_replaces_a_section():
    loaded = load_config("colormap", ["~colorizer", "colorizer={name: location}"])
    assert OmegaConf.to_container(loaded.colorizer) == {"name": "location"}


# ------------------------------------------------------------------------------- properties

WORDS = st.sampled_from(["a", "b", "name", "defaults", "segmenter", "pipeline", "x.y", "${a}", "${b}", "${oc.env:HOME}",
                         "${oc.decode:'1'}", "\\${a}", "../x.yaml", "/etc/passwd", "colormap", "&a", "*a", "!!str",
                         "[", "]", "{", "}", ":", "-", "\n", " ", "'", '"', "~", "?", "|", ">", "#", "%", "@", "\t"])


def load_or_error(path_or_name, overrides=()):
    """The loaded config or None for a ConfigError; anything else fails the test."""
    try:
        loaded = load_config(path_or_name, list(overrides))
    except ConfigError as exc:
        assert SECRET not in str(exc) and str(exc)
        return None
    assert isinstance(loaded, DictConfig)
    OmegaConf.to_container(loaded, resolve=True)  # resolving again (outside the guard) works too
    return loaded


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_a_config_or_a_config_error(tree, data):
    cfg, _ = tree
    path = cfg / "fuzz.yaml"
    path.write_bytes(data)
    load_or_error(path)


@FUZZ
@given(words=st.lists(WORDS, max_size=40))
def test_random_yaml_tokens_give_a_config_or_a_config_error(tree, words):
    cfg, _ = tree
    path = cfg / "fuzz.yaml"
    path.write_text("".join(words))
    load_or_error(path)


VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
                      | WORDS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WORDS | st.text(max_size=4),
                                                                                          inner, max_size=4),
                      max_leaves=25)


@FUZZ
@given(data=st.dictionaries(WORDS | st.text(max_size=4), VALUES, max_size=6))
def test_random_structured_configs_give_a_config_or_a_config_error(tree, data):
    cfg, _ = tree
    path = cfg / "fuzz.yaml"
    text = yaml.safe_dump(data) if data else "{}"
    path.write_text(text)
    load_or_error(path)
    path.write_text(json.dumps(data))  # JSON is YAML too
    load_or_error(path)


@FUZZ
@given(overrides=st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["colorizer.seed", "segmenter.name", "a", "a.b[0]", "~colorizer", "colorizer", "x..y", ""]),
    st.text(max_size=12) | WORDS), max_size=4) | st.lists(st.text(max_size=12), max_size=3))
def test_random_overrides_give_a_config_or_a_config_error(overrides):
    os.environ.pop(ENV_ALLOW_VAR, None)
    load_or_error("colormap", overrides)
