"""Data-parallel training with torchrun (2 processes, gloo on the CPU)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from esgkit.training.checkpoint import load_checkpoint
from esgkit.training.config import TrainConfig
from esgkit.training.trainer import Trainer
from training_toy import ToyTask

SCRIPT = Path(__file__).resolve().parent / "ddp_toy_run.py"
STEPS = 20


def _ddp_config():
    sys.path.insert(0, str(SCRIPT.parent))
    from ddp_toy_run import DDP_CONFIG

    return DDP_CONFIG


def torchrun(out: Path, steps: int, *extra: str) -> float:
    """``torchrun --standalone --nproc_per_node 2 ddp_toy_run.py OUT STEPS ...``; returns seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(out), str(steps), *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return time.perf_counter() - start


def test_torchrun_two_processes_agree_and_match_one_process(tmp_path):
    duration = torchrun(tmp_path, STEPS)
    print(f"torchrun 2-process run: {duration:.1f} s")

    w0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the replicas identical

    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [5, 10, 15, 20]  # rank 0 alone writes the log
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == STEPS and ckpt.config["world_size"] == 2
    assert isinstance(ckpt.state["rng"], list) and len(ckpt.state["rng"]) == 2  # every rank's RNG state

    # two processes × 4 samples average to the gradient of one process × 8 (the same samples): the
    # data-parallel run equals a single-process run up to float rounding
    single = Trainer(ToyTask(augment=False, dropout=0.0), TrainConfig(steps=STEPS, **_ddp_config()),
                     tmp_path / "single", progress=False)
    single.fit()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(w0[k], v, rtol=1e-4, atol=1e-5)


def test_torchrun_resume_is_exact_with_per_rank_randomness(tmp_path):
    """Dropout and augmentation differ per rank; the checkpoint holds every rank's RNG state. (One
    launch runs the straight run, the interrupted run and the resuming trainer, to keep it short.)"""
    duration = torchrun(tmp_path, 12, "--augment", "--resume-check")
    print(f"torchrun resume check: {duration:.1f} s")
    for rank in (0, 1):
        a = torch.load(tmp_path / "straight" / f"rank{rank}.pt", weights_only=True)
        b = torch.load(tmp_path / "split" / f"rank{rank}.pt", weights_only=True)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)
    assert load_checkpoint(tmp_path / "split").step == 12
