"""Training splits whose samples are prepared once (resizing, targets) and kept in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class PreparedSplit(Sequence[dict[str, Any]]):
    """A dataset split seen through ``prepare(sample)``, cached per index: training splits here are
    small and preparing a sample (resizing to the network's input, building targets) is the costly
    part, so each is prepared once. ``max_images`` > 0 keeps only the first images."""

    def __init__(self, dataset: Sequence[dict[str, Any]], max_images: int = 0) -> None:
        self.dataset = dataset
        n = len(dataset)
        self.length = min(n, max_images) if max_images > 0 else n
        self.cache: dict[int, dict[str, Any]] = {}

    def prepare(self, sample: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if index < 0 or index >= self.length:
            raise IndexError(index)
        if index not in self.cache:
            self.cache[index] = self.prepare(self.dataset[index])
        return self.cache[index]
