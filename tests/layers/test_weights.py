"""The one weights I/O: reading without executing code, the one mismatch report, tied weights,
shipped weights found inside the package, run folders."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model

from esgkit.core.errors import CheckpointError
from esgkit.layers.weights import (
    key_names, latest_checkpoint, load_state, load_weights, mismatch, read_state_dict, trained_weights, weights_path,
)


class T:  # anything with a .shape stands in for a tensor
    def __init__(self, *shape):
        self.shape = shape


def test_mismatch_names_missing_unexpected_and_shapes():
    expected = {"a": T(2, 3), "b": T(4), "c": T(1)}
    state = {"a": T(2, 3), "b": T(5), "zz": T(1)}
    parts = mismatch(state, expected)
    assert parts == ["missing keys: c", "unexpected keys: zz", "shape mismatch: b found (5,), expected (4,)"]
    assert mismatch(expected, expected) == []
    assert mismatch(["a"], ["a", "b"], optional=["b"]) == []


def test_key_names_truncates():
    keys = [f"k{i}" for i in range(12)]
    assert key_names(keys, 3) == "k0, k1, k10 … (12 in all)"  # sorted
    assert key_names(["k1", "k0"]) == "k0, k1"


def test_weights_path_finds_weights_shipped_in_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative path does not exist here
    shipped = weights_path("models/gella_tiny/gella_tiny.safetensors")
    assert shipped.is_absolute() and shipped.is_file()
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    assert weights_path("mine.safetensors") == Path("mine.safetensors")       # a local file wins
    assert weights_path("nowhere/x.safetensors") == Path("nowhere/x.safetensors")  # missing: as given


def test_read_state_dict_refuses_pickled_code_and_non_tensors(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_state_dict(tmp_path / "evil.pt")
    torch.save({"w": 3}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        read_state_dict(tmp_path / "plain.pt")
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "wrapped.pt")
    assert torch.equal(read_state_dict(tmp_path / "wrapped.pt")["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "missing.safetensors")


def test_load_state_reports_in_one_wording_and_leaves_the_module_untouched():
    model = torch.nn.Linear(2, 3)
    before = model.weight.detach().clone()
    with pytest.raises(CheckpointError) as err:
        load_state(model, {"weight": torch.zeros(3, 4), "extra": torch.zeros(1)}, "the thing", "fix it")
    msg = str(err.value)
    assert msg.startswith("the thing does not fit (missing keys: bias; unexpected keys: extra; shape mismatch: weight")
    assert msg.endswith("; fix it")
    assert torch.equal(model.weight, before)


def test_tied_weights_load_from_the_one_name_safetensors_keeps(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3, bias=False)
            self.b = torch.nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight

    src, dst = Tied(), Tied()
    save_model(src, str(tmp_path / "tied.safetensors"))  # stores the shared tensor once
    load_weights(dst, tmp_path / "tied.safetensors", "tied model")
    assert torch.equal(dst.a.weight, src.a.weight) and dst.b.weight is dst.a.weight


def test_trained_weights_of_a_run_folder(tmp_path):
    step = tmp_path / "checkpoints" / "step_00000002"
    step.mkdir(parents=True)
    save_file({"w": torch.ones(1)}, str(step / "model.safetensors"))
    assert latest_checkpoint(tmp_path) == step
    assert trained_weights(tmp_path) == (step / "model.safetensors").resolve()
    assert trained_weights(step / "model.safetensors") == (step / "model.safetensors").resolve()
    with pytest.raises(CheckpointError, match="no checkpoint of `esgkit train`"):
        trained_weights(tmp_path / "nothing")
