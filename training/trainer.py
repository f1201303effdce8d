"""A generic, resumable, data-parallel training loop.

A pipeline-specific **task** supplies everything model-specific (see ``TrainingTask``): it builds the
model and the training dataset, collates samples into a batch and turns (model, batch) into a dict of
named losses. The ``Trainer`` does the rest: seeding, freezing, AdamW + schedule, mixed precision,
gradient clipping, DDP, the batch order, checkpoints, ``metrics.jsonl`` and the progress bar.

Exact resume: the batch order is a function of (seed, step) (``ShardedBatches``), and checkpoints
hold the optimiser, scheduler, grad-scaler and every process's Python/NumPy/torch RNG states, so
training N steps, stopping and resuming to 2N gives the same weights as 2N steps straight (with
``num_workers=0``, or augmentation seeded from the sample index).

Data parallelism: launch the same script with ``torchrun --nproc_per_node K``; the trainer joins the
process group (gloo on CPU, nccl on GPUs), wraps the model in ``DistributedDataParallel`` and
checkpoints and logs on rank 0 only. ``batch_size`` is global and is split over the processes.

Use (what ``esgkit train CONFIG --data DIR --out RUN [--resume]`` does with a pipeline's task)::

    config = validate_dataclass(TrainConfig, cfg.get("train", {}), "train")   # esgkit.core.config
    trainer = Trainer(MyTask(cfg, data_dir), config, out_dir, resume=resume)
    summary = trainer.fit()          # {"step", "steps", "seconds", "steps_per_s", "last": {...}}

``metrics.jsonl`` rows: ``step``, ``epoch``, ``lr``, each raw loss term (mean over the logging
window and the processes), ``loss`` (the weighted total), ``steps_per_s``, ``samples_per_s``,
``time_s``; the task's validation metrics come as rows with ``"split": "val"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

import torch.distributed as dist

from esgkit.core import Task
from esgkit.core.errors import ConfigError, EsgkitError
from esgkit.core.outputs import atomic_write

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, ShardedBatches, all_gather_objects, barrier, init_distributed, local_rank
from .optim import build_optimizer, build_scheduler, freeze_parameters


class TrainingTask(Task):
    """What a pipeline supplies to the ``Trainer``: model, data and losses (a registered ``task``,
    see ``esgkit.core.Task``, is one of these).

    The trainer seeds every RNG before calling ``build_model`` and ``train_dataset``, so both may use
    random initialisation. ``losses`` runs inside the DDP wrapper's forward, so it may call any method
    of the model, not only ``forward``. ``log_scale``: plot the loss curves on a log scale.
    """

    log_scale: bool = False

    def __init__(self, pipeline_config: Mapping[str, Any] | None = None, data_dir: str | Path = "",
                 settings: Any = None) -> None:
        """Tasks built by ``esgkit train`` get the pipeline config, the data folder and their own
        validated settings; a task that needs none of them (a test's toy task) may skip this."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model to train (on the CPU; the trainer moves it)."""

    @abstractmethod
    def train_dataset(self) -> Sequence[Any]:
        """A map-style dataset (``__len__`` and ``__getitem__``) of training samples."""

    @abstractmethod
    def losses(self, model: nn.Module, batch: Any) -> Mapping[str, Tensor]:
        """Named scalar losses of one batch; the trainer minimises Σ weight·loss (``loss_weights``)."""

    def collate(self, samples: list[Any]) -> Any:
        """Samples → batch (default: ``torch.utils.data.default_collate``)."""
        return default_collate(samples)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """Move a batch to ``device`` (default: every tensor in nested dicts, lists and tuples)."""
        return move_to_device(batch, device)

    def config_dict(self) -> dict[str, Any]:
        """The task's resolved config, saved with every checkpoint (e.g. the pipeline config)."""
        return {}

    def evaluate(self, model: nn.Module, step: int) -> Mapping[str, float] | None:
        """Validation metrics, called on rank 0 every ``eval_every`` steps and at the end (in
        ``eval()`` mode, without gradients); logged to ``metrics.jsonl`` as ``{"split": "val"}``
        rows. Default: none."""
        return None


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _LossModule(nn.Module):
    """Puts the task's loss computation inside ``forward`` so DDP sees every parameter use."""

    def __init__(self, model: nn.Module, task: TrainingTask) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return dict(self.task.losses(self.model, batch))


class Trainer:
    """Trains ``task``'s model with ``config``; writes ``out_dir``/{checkpoints/, metrics.jsonl, config.json}.

    ``resume=True`` continues from the newest checkpoint in ``out_dir`` (or starts fresh when there
    is none); without it an ``out_dir`` that already holds checkpoints is refused.
    """

    def __init__(self, task: TrainingTask, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 device: str | torch.device | None = None, progress: bool = True) -> None:
        self.task, self.config, self.out_dir = task, config, Path(out_dir)
        if device is None:
            device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", local_rank())
        self.dist: DistInfo = init_distributed(self.device.type)
        self.progress = progress and self.dist.is_main
        self.ckpt_dir = self.out_dir / "checkpoints"

        checkpoint = None
        if resume:
            if self.ckpt_dir.is_dir() and any(self.ckpt_dir.glob("step_*")):
                checkpoint = load_checkpoint(self.out_dir)
        elif self.dist.is_main and self.ckpt_dir.is_dir() and any(self.ckpt_dir.glob("step_*")):
            raise ConfigError(f"{self.out_dir} already holds checkpoints; pass --resume to continue or choose another --out")

        seed_everything(config.seed + self.dist.rank)
        self.model = task.build_model()
        self.frozen = freeze_parameters(self.model, list(config.freeze))
        self.model.to(self.device)
        self.dataset = task.train_dataset()
        if config.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {self.dist.world_size} processes",
                              key="train.batch_size")
        self.batch_per_rank = config.batch_size // self.dist.world_size
        probe = ShardedBatches(len(self.dataset), self.batch_per_rank, config.seed, self.dist.rank, self.dist.world_size)
        self.steps_per_epoch = probe.steps_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch if config.epochs > 0 else config.steps
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps, self.steps_per_epoch)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        if checkpoint is not None:
            self._restore(checkpoint)
        self.loss_module: nn.Module = _LossModule(self.model, task)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids,
                                                       find_unused_parameters=config.find_unused_parameters)

    # ----------------------------------------------------------------------------------- setup

    def _amp_dtype(self) -> torch.dtype | None:
        mode = self.config.amp
        if mode == "off":
            return None
        if self.device.type == "cuda":
            if mode == "fp16":
                return torch.float16
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
            if mode == "bf16":
                raise ConfigError("this GPU has no bfloat16 support; use amp=fp16 or amp=auto", key="train.amp")
            return torch.float16
        if mode == "fp16":
            raise ConfigError("fp16 mixed precision needs a CUDA device; use amp=bf16 or amp=off", key="train.amp")
        return torch.bfloat16 if mode == "bf16" else None  # auto: full precision on the CPU

    def _resolved_config(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.config), "task": self.task.config_dict(),
                "world_size": self.dist.world_size}

    def _restore(self, ckpt: Any) -> None:
        saved = ckpt.config.get("train", {})
        changed = sorted(k for k, v in dataclasses.asdict(self.config).items() if k in saved and _jsonable(v) != saved[k])
        if changed and self.dist.is_main:
            tqdm.write(f"resume: train config differs from the checkpoint in {changed}; the run will not be exact")
        ckpt.load_model(self.model)
        self.optimizer.load_state_dict(ckpt.state["optimizer"])
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        if ckpt.state.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt.state["scaler"])
        self.step = ckpt.step
        rng = ckpt.state["rng"]
        rng_states = rng if isinstance(rng, list) else [rng]
        if len(rng_states) == self.dist.world_size:
            restore_rng_state(rng_states[self.dist.rank])
        else:  # another process count: batches stay exact, random augmentation does not
            seed_everything(self.config.seed + self.dist.rank + 1_000_003 * self.step)
            if self.dist.is_main:
                tqdm.write(f"resume: checkpoint from {len(rng_states)} process(es), now {self.dist.world_size}; RNG reseeded")

    # ----------------------------------------------------------------------------------- loop

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train to the end (or up to global step ``until``), checkpoint, and return a summary."""
        cfg = self.config
        stop = self.total_steps if until is None else min(until, self.total_steps)
        batches = ShardedBatches(len(self.dataset), self.batch_per_rank, cfg.seed, self.dist.rank,
                                 self.dist.world_size, start_step=self.step)
        # The generator seeds DataLoader workers: a function of (seed, start step), so a resumed run
        # does not replay the augmentation of the run's beginning, and nothing draws from torch's RNG.
        workers_seed = torch.Generator().manual_seed(cfg.seed + 1_000_003 * self.step)
        loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.task.collate,
                            num_workers=cfg.num_workers, generator=workers_seed)
        metrics_path = self.out_dir / "metrics.jsonl"
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _truncate_metrics(metrics_path, self.step)
            atomic_write(self.out_dir / "config.json", json.dumps(self._resolved_config(), indent=2, default=str))
        bar = tqdm(total=stop, initial=self.step, disable=not self.progress, desc="train", unit="step", dynamic_ncols=True)
        self.loss_module.train()
        window: dict[str, list[float]] = {}  # loss name -> [sum, count]; subtasks may differ per step
        window_steps, window_start, start_time = 0, time.perf_counter(), time.perf_counter()
        start_step, last = self.step, {}
        schedule = self.scheduler.lr_lambdas[0]
        budget = cfg.time_budget_min * 60.0
        spent_before = schedule.time_fraction * budget  # restored from the checkpoint on resume
        out_of_time = False
        iterator = iter(loader)
        try:
            while self.step < stop:
                if budget > 0:
                    fraction = self._synced((spent_before + time.perf_counter() - start_time) / budget)
                    schedule.time_fraction = min(fraction, 1.0)
                    if fraction >= 1.0:
                        out_of_time = True
                        if self.dist.is_main:
                            tqdm.write(f"time budget of {cfg.time_budget_min:g} min reached at step {self.step}")
                        break
                batch = self.task.to_device(next(iterator), self.device)
                terms = self._train_step(batch)
                self.step += 1
                window_steps += 1
                for k, v in terms.items():
                    acc = window.setdefault(k, [0.0, 0])
                    acc[0] += v
                    acc[1] += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == stop:
                    elapsed = time.perf_counter() - window_start
                    last = self._log(window, window_steps, elapsed, time.perf_counter() - start_time, metrics_path)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{last['samples_per_s']:.1f}")
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < stop:
                    self._evaluate(metrics_path)
                if self.step % cfg.checkpoint_every == 0 and self.step < stop:
                    self.save()
        except KeyboardInterrupt:
            if self.dist.is_main:
                tqdm.write(f"interrupted at step {self.step}; the last checkpoint is intact, continue with resume")
            raise
        finally:
            bar.close()
        if self.step == self.total_steps or out_of_time or (cfg.eval_every and self.step % cfg.eval_every == 0):
            self._evaluate(metrics_path)
        self.save()
        duration = time.perf_counter() - start_time
        steps = self.step - start_step
        return {"step": self.step, "steps": steps, "seconds": duration,
                "steps_per_s": steps / duration if duration > 0 else math.nan, "last": last}

    def _synced(self, value: float) -> float:
        """``value`` as the largest over the processes, so every rank takes the same lr and stops together."""
        if not self.dist.enabled:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def _train_step(self, batch: Any) -> dict[str, float]:
        cfg = self.config
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            losses = self.loss_module(batch)
        if not losses:
            raise EsgkitError("the task's losses() returned no loss")
        total = sum(cfg.loss_weights.get(k, 1.0) * v.float() for k, v in losses.items())
        if not torch.isfinite(total):
            detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            raise EsgkitError(f"non-finite loss at step {self.step + 1} ({detail}); lower train.lr or set train.grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["loss"] = float(total.detach())
        return out

    def _log(self, window: dict[str, list[float]], steps: int, elapsed: float, total_time: float,
             path: Path) -> dict[str, Any]:
        """Mean of each loss over the window and over all processes (which may have computed different
        losses, e.g. other subtasks), written by rank 0."""
        merged: dict[str, list[float]] = {}
        for part in all_gather_objects(window, self.dist):
            for k, (total, count) in part.items():  # type: ignore[union-attr]
                acc = merged.setdefault(k, [0.0, 0])
                acc[0] += total
                acc[1] += count
        row: dict[str, Any] = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                               "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({k: total / count for k, (total, count) in sorted(merged.items())})
        row["steps_per_s"] = steps / elapsed if elapsed > 0 else math.nan
        row["samples_per_s"] = row["steps_per_s"] * self.config.batch_size
        row["time_s"] = round(total_time, 3)
        if self.dist.is_main:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
        return row

    def _evaluate(self, path: Path) -> None:
        """The task's validation metrics on rank 0 (the other processes wait)."""
        if self.dist.is_main:
            rng = capture_rng_state()  # evaluation must not change the training's random stream
            self.model.eval()
            with torch.no_grad():
                result = self.task.evaluate(self.model, self.step)
            self.model.train()
            restore_rng_state(rng)
            if result:
                row = {"step": self.step, "split": "val", **{k: float(v) for k, v in result.items()}}
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                if self.progress:
                    tqdm.write(f"step {self.step}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
        barrier(self.dist)

    def save(self) -> Path | None:
        """Checkpoint the current step (rank 0 writes; every process must call it)."""
        rng = all_gather_objects(capture_rng_state(), self.dist)
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.ckpt_dir, self.step, self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, scaler=self.scaler, config=self._resolved_config(),
                                   rng=rng, keep_last=self.config.keep_last)
        barrier(self.dist)
        return path

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _row_step(line: str) -> int | None:
    """The step of a ``metrics.jsonl`` row, or None for a line that is no complete row (torn by a kill)."""
    try:
        row = json.loads(line)
        return int(row.get("step", 0)) if isinstance(row, dict) else None
    except (ValueError, TypeError):
        return None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (by a run that crashed after its last checkpoint) and a row torn
    by a kill; the file is rewritten atomically, ending with a newline, so appending goes on cleanly."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = [line for line in text.splitlines() if line.strip()]
    kept = [r for r in rows if (s := _row_step(r)) is not None and s <= step]
    if len(kept) != len(rows) or (text and not text.endswith("\n")):
        atomic_write(path, "".join(r + "\n" for r in kept))
