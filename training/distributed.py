"""Data-parallel plumbing: process-group setup from ``torchrun``'s environment, and a deterministic,
resumable, sharded batch order.

The batch order is a pure function of (seed, step, rank, world size): epoch ``e`` is a permutation
drawn from a generator seeded with ``seed + e``, padded to a multiple of the world size and dealt
round-robin to the processes (as ``DistributedSampler`` does); the incomplete last batch is dropped so
every process runs the same number of steps. Resuming at step ``s`` therefore needs only ``s``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from esgkit.core.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def local_rank() -> int:
    """This process's index on its machine (``torchrun`` sets ``LOCAL_RANK``)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group described by ``torchrun``'s environment (``WORLD_SIZE`` > 1): nccl for
    CUDA devices, gloo otherwise. Without those variables this is one process; nothing is initialised."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank(), initialized_here=True)


class ShardedBatches:
    """Infinite iterable of index batches for one process, starting at any global step."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, start_step: int = 0) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.start_step = rank, world_size, shuffle, start_step
        per_rank = -(-num_samples // world_size)  # ceil
        self.steps_per_epoch = per_rank // batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the dataset has {num_samples} samples, fewer than one batch of {batch_size} per process "
                f"× {world_size} process(es); lower train.batch_size or add data", key="train.batch_size")

    def epoch_indices(self, epoch: int) -> list[int]:
        """This process's sample indices of ``epoch``, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = -(-self.num_samples // self.world_size) * self.world_size
        order += order[: total - len(order)]  # pad so every process gets as many samples
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        while True:
            indices = self.epoch_indices(epoch)
            for b in range(offset, self.steps_per_epoch):
                yield indices[b * self.batch_size : (b + 1) * self.batch_size]
            epoch, offset = epoch + 1, 0


def all_gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every process's ``obj`` (a one-element list without data parallelism)."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
