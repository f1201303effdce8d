from pathlib import Path

import numpy as np

from esgkit.core.checkpoints import key_names, state_mismatch


class T:  # anything with a .shape stands in for a tensor
    def __init__(self, *shape):
        self.shape = shape


def test_state_mismatch_names_missing_unexpected_and_shapes():
    expected = {"a": T(2, 3), "b": T(4), "c": T(1)}
    state = {"a": T(2, 3), "b": T(5), "zz": T(1)}
    parts = state_mismatch(state, expected)
    assert parts == ["missing keys: c", "unexpected keys: zz", "shape mismatch: b found (5,), expected (4,)"]
    assert state_mismatch(expected, expected) == []


def test_key_names_truncates():
    keys = [f"k{i}" for i in range(12)]
    assert key_names(keys, 3) == "k0, k1, k2 … (12 in all)"
    assert key_names(keys[:2]) == "k0, k1"
    _ = np


def test_weights_path_finds_weights_shipped_in_the_package(tmp_path, monkeypatch):
    from esgkit.core.checkpoints import weights_path

    monkeypatch.chdir(tmp_path)  # the relative path does not exist here
    shipped = weights_path("pipelines/weights/gella_tiny/gella_tiny.safetensors")
    assert shipped.is_absolute() and shipped.is_file()
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    assert weights_path("mine.safetensors") == Path("mine.safetensors")       # a local file wins
    assert weights_path("nowhere/x.safetensors") == Path("nowhere/x.safetensors")  # missing: as given
