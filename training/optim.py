"""AdamW with frozen parts and per-pattern learning rates, and the warm-up + step/cosine/poly schedule.

Parameter patterns are ``fnmatch`` patterns on ``model.named_parameters()`` names
(``"clip.*"``, ``"*.norm.*"``). A pattern that matches no parameter is an error: a typo must not
silently train what was meant to be frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from esgkit.core.errors import ConfigError

from .config import TrainConfig


def _unmatched(patterns: list[str], names: list[str]) -> list[str]:
    return [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]


def freeze_parameters(model: nn.Module, patterns: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on parameters whose name matches a pattern; returns their names."""
    names = [n for n, _ in model.named_parameters()]
    bad = _unmatched(list(patterns), names)
    if bad:
        raise ConfigError(f"pattern(s) {bad} match no parameter (names look like {names[:3]})", key="train.freeze")
    frozen = []
    for name, p in model.named_parameters():
        if any(fnmatchcase(name, pat) for pat in patterns):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, grouped by lr multiplier and weight decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("every parameter is frozen: nothing to train", key="train.freeze")
    bad = _unmatched(list(config.lr_mult), [n for n, _ in named])
    if bad:
        raise ConfigError(f"pattern(s) {bad} match no trainable parameter", key="train.lr_mult")
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    for name, p in named:
        mult = next((m for pat, m in config.lr_mult.items() if fnmatchcase(name, pat)), 1.0)
        decay = 0.0 if config.no_decay_1d and p.ndim <= 1 else config.weight_decay
        groups.setdefault((mult, decay), []).append(p)
    param_groups = [
        {"params": ps, "lr": config.lr * mult, "weight_decay": decay} for (mult, decay), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


@dataclass
class LRSchedule:
    """Learning-rate factor as a pure function of the step (so resuming needs only the step).

    Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps``, then ``constant``, ``step``
    (×gamma at each milestone, in steps), ``cosine`` or ``poly`` (down to ``min_lr_ratio``).
    """

    total_steps: int
    kind: str = "constant"
    warmup_steps: int = 0
    warmup_factor: float = 0.001
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    poly_power: float = 0.9
    time_fraction: float = 0.0  # share of train.time_budget_min used so far (set by the trainer)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            warm = self.warmup_factor + (1 - self.warmup_factor) * step / self.warmup_steps
        else:
            warm = 1.0
        progress = min(max(max(step, 0) / max(self.total_steps, 1), self.time_fraction), 1.0)
        if self.kind == "step":
            factor = self.gamma ** sum(1 for m in self.milestones if step >= m)
        elif self.kind == "cosine":
            factor = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.kind == "poly":
            factor = self.min_lr_ratio + (1 - self.min_lr_ratio) * (1 - progress) ** self.poly_power
        else:
            factor = 1.0
        return warm * factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int,
                    steps_per_epoch: int = 1) -> LambdaLR:
    """The schedule of ``config`` over ``total_steps``; milestones in epochs when ``config.epochs`` > 0."""
    scale = steps_per_epoch if config.epochs > 0 else 1
    schedule = LRSchedule(
        total_steps=total_steps,
        kind=config.schedule,
        warmup_steps=config.warmup_steps,
        warmup_factor=config.warmup_factor,
        milestones=[int(m) * scale for m in config.milestones],
        gamma=config.gamma,
        min_lr_ratio=config.min_lr_ratio,
        poly_power=config.poly_power,
    )
    return LambdaLR(optimizer, schedule)
