import json
import math

import pytest
import torch

from esgkit.core.errors import ConfigError
from esgkit.training import trainer as trainer_mod
from esgkit.training.checkpoint import load_checkpoint
from esgkit.training.config import TrainConfig
from esgkit.training.distributed import ShardedBatches
from esgkit.training.optim import LRSchedule
from esgkit.training.trainer import Trainer
from training_toy import ToyTask

N = 6  # resume test: N steps, stop, resume to 2N


def cfg(**kw):
    base = dict(lr=3e-2, steps=2 * N, batch_size=8, warmup_steps=2, schedule="cosine", grad_clip=1.0,
                checkpoint_every=4, log_every=1, keep_last=3, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run):
    model = ToyTask().build_model()
    load_checkpoint(run).load_model(model)
    return model.state_dict()


def test_resume_continues_exactly(tmp_path):
    straight = tmp_path / "straight"
    Trainer(ToyTask(), cfg(), straight, progress=False).fit()

    split = tmp_path / "split"
    first = Trainer(ToyTask(), cfg(), split, progress=False)
    assert first.fit(until=N)["step"] == N  # "stop" after N steps (40 samples / 8 = 5 steps per epoch)
    second = Trainer(ToyTask(), cfg(), split, resume=True, progress=False)
    assert second.step == N
    second.fit()

    a, b = rows(straight), rows(split)
    assert [r["step"] for r in b] == list(range(1, 2 * N + 1))
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6, abs=1e-7)
        assert rb["lr"] == pytest.approx(ra["lr"], rel=1e-9)
    wa, wb = weights(straight), weights(split)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7)


def test_resume_without_rng_restore_would_diverge(tmp_path, monkeypatch):
    """The resume test can fail: skipping the RNG restore changes the dropout and augmentation."""
    straight = tmp_path / "straight"
    Trainer(ToyTask(), cfg(), straight, progress=False).fit()
    split = tmp_path / "split"
    Trainer(ToyTask(), cfg(), split, progress=False).fit(until=N)
    monkeypatch.setattr(trainer_mod, "restore_rng_state", lambda state: None)
    Trainer(ToyTask(), cfg(), split, resume=True, progress=False).fit()
    assert rows(split)[N]["loss"] != pytest.approx(rows(straight)[N]["loss"], rel=1e-6)


def test_metrics_progress_and_loss_decrease(tmp_path):
    summary = Trainer(ToyTask(), cfg(steps=40, log_every=5, checkpoint_every=20, schedule="constant"), tmp_path,
                      progress=False).fit()
    r = rows(tmp_path)
    assert [x["step"] for x in r] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert {"loss", "mse", "l1", "lr", "epoch", "steps_per_s", "samples_per_s", "time_s"} <= set(r[0])
    assert r[-1]["loss"] < 0.5 * r[0]["loss"]
    assert r[-1]["epoch"] == 8.0
    assert summary["steps_per_s"] > 0 and summary["step"] == 40
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["lr"] == pytest.approx(3e-2) and saved["task"]["n"] == 40


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    Trainer(ToyTask(), cfg(steps=8, checkpoint_every=4), tmp_path, progress=False).fit(until=4)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a crashed run had logged steps 5, 6
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + json.dumps({"step": 6, "loss": 1.0}) + "\n")
    Trainer(ToyTask(), cfg(steps=8, checkpoint_every=4), tmp_path, resume=True, progress=False).fit()
    assert [x["step"] for x in rows(tmp_path)] == list(range(1, 9))


def test_existing_run_needs_resume(tmp_path):
    Trainer(ToyTask(), cfg(steps=2), tmp_path, progress=False).fit()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(ToyTask(), cfg(steps=2), tmp_path, progress=False)
    # resume in an empty folder starts fresh
    assert Trainer(ToyTask(), cfg(steps=2), tmp_path / "new", resume=True, progress=False).step == 0


def test_freeze_patterns_and_lr_multipliers(tmp_path):
    t = Trainer(ToyTask(), cfg(steps=4, freeze=["backbone.*"], lr_mult={"head.*": 0.1}), tmp_path, progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    after = t.model.state_dict()
    assert t.frozen == ["backbone.weight", "backbone.bias"]
    assert torch.equal(before["backbone.weight"], after["backbone.weight"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
    lrs = sorted({g["initial_lr"] for g in t.optimizer.param_groups})
    assert lrs == pytest.approx([3e-3, 3e-2])
    decays = {g["weight_decay"] for g in t.optimizer.param_groups}
    assert decays == {0.0, 0.05}  # 1-D parameters (biases, norm) without weight decay
    with pytest.raises(ConfigError, match="train.freeze"):
        Trainer(ToyTask(), cfg(freeze=["backbon.*"]), tmp_path / "typo", progress=False)


def test_epochs_and_milestones_in_epochs(tmp_path):
    t = Trainer(ToyTask(), cfg(epochs=3, schedule="step", milestones=[2], warmup_steps=0), tmp_path, progress=False)
    assert t.steps_per_epoch == 5 and t.total_steps == 15
    t.fit()
    lrs = [x["lr"] for x in rows(tmp_path)]  # the lr after each step: decays ×0.1 from step 10 (epoch 2)
    assert lrs[8] == pytest.approx(3e-2) and lrs[9] == pytest.approx(3e-3)


def test_bf16_autocast_on_cpu(tmp_path):
    t = Trainer(ToyTask(), cfg(steps=3, amp="bf16"), tmp_path, progress=False)
    assert t.amp_dtype == torch.bfloat16
    assert math.isfinite(t.fit()["last"]["loss"])
    with pytest.raises(ConfigError, match="CUDA"):
        Trainer(ToyTask(), cfg(steps=3, amp="fp16"), tmp_path / "fp16", progress=False)


def test_non_finite_loss_names_the_step(tmp_path):
    class Exploding(ToyTask):
        def losses(self, model, batch):
            return {"bad": model(batch["x"]).sum() * float("nan")}

    from esgkit.core.errors import EsgkitError
    with pytest.raises(EsgkitError, match="non-finite loss at step 1"):
        Trainer(Exploding(), cfg(steps=2), tmp_path, progress=False).fit()


def test_schedules():
    s = LRSchedule(total_steps=100, kind="cosine", warmup_steps=10, warmup_factor=0.0, min_lr_ratio=0.1)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.05))))
    assert s(50) == pytest.approx(0.55) and s(100) == pytest.approx(0.1)
    s = LRSchedule(total_steps=50, kind="step", milestones=[46, 48], gamma=0.1)
    assert [s(45), s(46), s(47), s(48)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert LRSchedule(total_steps=10, kind="poly", poly_power=1.0)(5) == pytest.approx(0.5)


def test_sharded_batches_are_deterministic_disjoint_and_resumable():
    two = [ShardedBatches(21, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    assert two[0].steps_per_epoch == 2  # ceil(21 / 2) = 11 samples per rank → 2 full batches
    it = [iter(s) for s in two]
    epoch0 = [next(it[0]) + next(it[0]), next(it[1]) + next(it[1])]
    assert not set(epoch0[0]) & set(epoch0[1])
    one = iter(ShardedBatches(21, 8, seed=3))  # one process with the global batch sees the same samples
    assert sorted(next(one)) == sorted(epoch0[0][:4] + epoch0[1][:4])
    full = [b for _, b in zip(range(7), ShardedBatches(21, 4, seed=3, rank=1, world_size=2))]
    resumed = [b for _, b in zip(range(4), ShardedBatches(21, 4, seed=3, rank=1, world_size=2, start_step=3))]
    assert resumed == full[3:]
    with pytest.raises(ConfigError, match="batch_size"):
        ShardedBatches(3, 4, seed=0)


def test_config_validation():
    with pytest.raises(ConfigError, match="train.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="train.milestones"):
        TrainConfig(milestones=[5, 2])


def test_set_prediction_task_learns_with_hungarian_matching(tmp_path):
    from training_toy import MaskToyTask

    config = TrainConfig(lr=1e-2, steps=60, batch_size=8, warmup_steps=5, schedule="cosine", grad_clip=1.0, log_every=10,
                         checkpoint_every=100, seed=0)
    Trainer(MaskToyTask(), config, tmp_path, progress=False).fit()
    r = rows(tmp_path)
    assert r[-1]["loss"] < 0.6 * r[0]["loss"], [x["loss"] for x in r]
    assert r[-1]["dice"] < r[0]["dice"]


class Interrupting(ToyTask):
    """Raises KeyboardInterrupt (Ctrl-C) in the middle of the 7th step."""

    calls = 0

    def losses(self, model, batch):
        Interrupting.calls += 1
        if Interrupting.calls == 7:
            raise KeyboardInterrupt
        return super().losses(model, batch)


def test_ctrl_c_then_resume_matches_straight_run(tmp_path):
    straight = tmp_path / "straight"
    Trainer(ToyTask(), cfg(), straight, progress=False).fit()
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(Interrupting(), cfg(), run, progress=False).fit()  # checkpoint at step 4, dies in step 7
    assert load_checkpoint(run).step == 4
    Trainer(ToyTask(), cfg(), run, resume=True, progress=False).fit()
    wa, wb = weights(straight), weights(run)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7)


def test_evaluate_hook_and_progress_bar(tmp_path, capsys):
    class Evaluated(ToyTask):
        def evaluate(self, model, step):
            assert not model.training and not torch.is_grad_enabled()
            torch.rand(3)  # must not disturb the training's random stream
            return {"mse": float(model(torch.ones(2, 8)).pow(2).mean())}

    Trainer(Evaluated(), cfg(eval_every=4), tmp_path / "eval", progress=True).fit()
    val = [r for r in rows(tmp_path / "eval") if r.get("split") == "val"]
    assert [r["step"] for r in val] == [4, 8, 12]
    err = capsys.readouterr().err
    assert "train" in err and "loss=" in err and "samples_s=" in err
    Trainer(ToyTask(), cfg(), tmp_path / "plain", progress=False).fit()
    train_rows = lambda run: [r["loss"] for r in rows(run) if r.get("split") != "val"]  # noqa: E731
    assert train_rows(tmp_path / "eval") == train_rows(tmp_path / "plain")


def test_losses_that_vary_per_step_are_averaged_over_the_steps_that_have_them(tmp_path):
    class Subtasks(ToyTask):  # like GELLA's subtask sampling: a loss only on some steps
        calls = 0

        def losses(self, model, batch):
            Subtasks.calls += 1
            out = dict(super().losses(model, batch))
            if Subtasks.calls % 2 == 0:
                out["extra"] = torch.tensor(4.0, requires_grad=True)
            return out

    Trainer(Subtasks(), cfg(steps=4, log_every=4), tmp_path, progress=False).fit()
    assert rows(tmp_path)[0]["extra"] == pytest.approx(4.0)


def test_dataloader_workers_are_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        Trainer(ToyTask(), cfg(steps=4, num_workers=2), run, progress=False).fit()
    assert [r["loss"] for r in rows(a)] == [r["loss"] for r in rows(b)]


def test_time_budget_stops_in_time_and_finishes_the_decay(tmp_path, monkeypatch):
    """train.time_budget_min: a run of 1000 steps on a (fake) clock that ticks 1 s per reading stops
    once 12 s are spent, saves that step, and its cosine lr has decayed by the time fraction."""
    clock = iter(range(10**6))
    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: float(next(clock)))
    run = tmp_path / "run"
    summary = Trainer(ToyTask(), cfg(steps=1000, time_budget_min=0.2, warmup_steps=0, checkpoint_every=500),
                      run, progress=False).fit()
    assert 1 < summary["step"] < 20
    assert load_checkpoint(run).step == summary["step"]
    lrs = [r["lr"] for r in rows(run) if "lr" in r]
    assert lrs[-1] < 0.5 * lrs[0]            # by steps alone (< 2 % of 1000) the cosine lr would be ~unchanged
    with pytest.raises(ConfigError, match="train.time_budget_min"):
        TrainConfig(time_budget_min=-1)
