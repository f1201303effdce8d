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
