import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from esgkit.core.errors import CheckpointError
from esgkit.training import checkpoint as ckpt
from esgkit.training.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight  # tied, as an LM's head and embeddings


def _trained(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_roundtrip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, opt, sched = _trained()
    save_checkpoint(tmp_path, 3, model, optimizer=opt, scheduler=sched, config={"lr": 0.01}, extra={"note": "x"})
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())

    c = load_checkpoint(tmp_path)
    assert c.step == 3 and c.config == {"lr": 0.01} and c.state["extra"] == {"note": "x"}
    fresh, _, _ = _trained(seed=1)
    c.load_model(fresh)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(c.state["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 2)
    sched2.load_state_dict(c.state["scheduler"])
    assert sched2.last_epoch == 3
    restore_rng_state(c.state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws
    # the state file is loadable with weights_only=True (no code executed) and the config is JSON
    torch.load(c.path / "state.pt", weights_only=True)
    assert json.loads((c.path / "config.json").read_text())["step"] == 3


def test_tied_weights_save_and_load(tmp_path):
    model = Tied()
    save_checkpoint(tmp_path, 1, model)
    other = Tied()
    load_checkpoint(tmp_path).load_model(other)
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert other.out.weight.data_ptr() == other.embed.weight.data_ptr()


def test_wrong_model_names_the_keys(tmp_path):
    save_checkpoint(tmp_path, 1, nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="missing keys|cannot load"):
        load_checkpoint(tmp_path).load_model(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "nowhere")


def test_keep_last(tmp_path):
    model = nn.Linear(2, 2)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]
    assert load_checkpoint(tmp_path).step == 5


def test_crash_mid_write_leaves_latest_loadable(tmp_path, monkeypatch):
    model = nn.Linear(4, 4)
    save_checkpoint(tmp_path, 1, model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)

    def torn_write(obj, path, *args, **kwargs):  # half a file, then Ctrl-C
        with open(path, "wb") as f:
            f.write(b"\x80\x02partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", torn_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, model)
    monkeypatch.undo()

    assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())  # the torn write is there ...
    c = load_checkpoint(tmp_path)  # ... but latest still names the complete step 1
    assert c.step == 1
    fresh = nn.Linear(4, 4)
    c.load_model(fresh)
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    save_checkpoint(tmp_path, 3, model)  # the next save cleans the leftovers
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    assert load_checkpoint(tmp_path).step == 3


def test_process_killed_mid_write_leaves_latest_loadable(tmp_path):
    """A hard kill (os._exit: no exception handlers, no cleanup) in the middle of writing the weights."""
    script = textwrap.dedent(f"""
        import os, torch, safetensors.torch
        from torch import nn
        from esgkit.training import checkpoint as ckpt
        torch.manual_seed(0)
        model = nn.Linear(64, 64)
        ckpt.save_checkpoint({str(tmp_path)!r}, 1, model)
        def killed(model, filename, metadata=None, **kw):
            with open(filename, "wb") as f:
                f.write(b"{{\\"partial")
                f.flush()
            os._exit(9)
        ckpt.save_model = killed
        with torch.no_grad():
            model.weight.zero_()
        ckpt.save_checkpoint({str(tmp_path)!r}, 2, model)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    c = load_checkpoint(tmp_path)
    assert c.step == 1
    model = nn.Linear(64, 64)
    c.load_model(model)
    assert model.weight.abs().sum() > 0  # the weights of step 1, not the zeroed ones


def test_unreadable_latest_pointer_falls_back_to_newest_complete_folder(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, 1, model)
    save_checkpoint(tmp_path, 2, model)
    (tmp_path / "latest.json").write_text("{not json")
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    assert latest_checkpoint(tmp_path.parent / tmp_path.name / "step_00000001").name == "step_00000001"


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    a = (random.random(), np.random.normal(), torch.randn(2))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (random.random(), np.random.normal(), torch.randn(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
