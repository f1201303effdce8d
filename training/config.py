"""``TrainConfig``: the optimisation settings every esgkit training run shares.

It is a plain dataclass so a YAML ``train:`` section validates against it with
``esgkit.core.schema.validate_dataclass`` (unknown keys and wrong types name the full key). The model,
its losses and its data come from the pipeline-specific task (see ``esgkit.training.trainer``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esgkit.core.errors import ConfigError

SCHEDULES = ("constant", "step", "cosine", "poly")
AMP_MODES = ("off", "auto", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Optimiser, schedule, precision, checkpointing and logging of one run.

    Run length: ``epochs`` > 0 wins over ``steps``; ``milestones`` are then in epochs too (GELLA decays
    ×0.1 at epochs 46 and 48 of 50), otherwise in optimiser steps. ``batch_size`` is the *global* batch
    (split over data-parallel processes), so changing the process count keeps the hyperparameters.
    """

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    steps: int = 1000
    epochs: int = 0
    batch_size: int = 8
    warmup_steps: int = 0  # linear warm-up from warmup_factor·lr to lr
    warmup_factor: float = 0.001
    schedule: str = "constant"  # constant | step | cosine | poly
    milestones: list[int] = field(default_factory=list)  # step schedule: multiply lr by gamma at each
    gamma: float = 0.1
    min_lr_ratio: float = 0.0  # cosine / poly end at min_lr_ratio·lr
    poly_power: float = 0.9
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    amp: str = "off"  # off | auto (bf16 on a GPU that supports it) | bf16 | fp16 (CUDA, with scaling)
    freeze: list[str] = field(default_factory=list)  # fnmatch patterns on parameter names
    lr_mult: dict[str, float] = field(default_factory=dict)  # pattern -> lr multiplier (backbone: 0.1)
    no_decay_1d: bool = True  # no weight decay on biases and norm weights (1-D parameters)
    loss_weights: dict[str, float] = field(default_factory=dict)  # loss name -> weight; missing = 1
    time_budget_min: float = 0.0  # > 0: stop after this many minutes of training (checkpoint saved); the lr
                                  # schedule then runs on max(step, time) progress so its decay ends in time
                                  # at any speed. Such runs resume, but not bit-exactly (time is not replayable)
    checkpoint_every: int = 500  # steps; the last step is always saved
    keep_last: int = 3
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # steps between the task's evaluate() calls; 0 = only at the end
    num_workers: int = 0  # DataLoader workers; exact resume needs 0 or index-seeded augmentation
    find_unused_parameters: bool = True  # DDP: some subtasks leave parts of the model unused

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the bad ``train.*`` key."""
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}", key="train.schedule")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"unknown amp mode {self.amp!r}; choose one of {', '.join(AMP_MODES)}", key="train.amp")
        positive = {"lr": self.lr, "batch_size": self.batch_size, "keep_last": self.keep_last,
                    "checkpoint_every": self.checkpoint_every, "log_every": self.log_every}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"must be > 0, got {value}", key=f"train.{key}")
        if self.epochs < 0 or self.steps <= 0 and self.epochs == 0:
            raise ConfigError("set steps > 0 or epochs > 0", key="train.steps")
        if self.time_budget_min < 0:
            raise ConfigError(f"must be >= 0, got {self.time_budget_min}", key="train.time_budget_min")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("warmup_steps, grad_clip and weight_decay must be >= 0", key="train")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"milestones must be increasing, got {list(self.milestones)}", key="train.milestones")


def split_train_section(section: Mapping[str, Any], task_config_cls: type) -> tuple[TrainConfig, Any]:
    """A config's ``train:`` section → (TrainConfig, the task's own Config), each validated with its
    full ``train.*`` key names: keys the task's Config declares go to it, the rest to TrainConfig
    (``task``, which names the task, to neither)."""
    from esgkit.core.errors import ConfigError, close_matches
    from esgkit.core.schema import validate_dataclass

    own = {f.name for f in dataclasses.fields(task_config_cls)}
    values = {k: v for k, v in section.items() if k != "task"}
    known = own | {f.name for f in dataclasses.fields(TrainConfig)} | {"task"}
    for key in values:
        if key not in known:
            hint = close_matches(str(key), known)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown key.{extra} The trainer's keys: {', '.join(f.name for f in dataclasses.fields(TrainConfig))}; "
                              f"the task's ({task_config_cls.__name__}): {', '.join(sorted(own)) or '(none)'}",
                              key=f"train.{key}")
    task_values = {k: v for k, v in values.items() if k in own}
    train_values = {k: v for k, v in values.items() if k not in own}
    return (validate_dataclass(TrainConfig, train_values, "train"),
            validate_dataclass(task_config_cls, task_values, "train"))


__all__ = ["AMP_MODES", "SCHEDULES", "TrainConfig", "split_train_section"]
