"""A tiny regression task for the trainer tests (and the torchrun script).

Every RNG the trainer must restore on resume is used: NumPy (input noise) and Python ``random``
(a random sign flip) in ``__getitem__``, torch (dropout) in the model.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from esgkit.training.trainer import TrainingTask

DIM = 8


class ToyModel(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = nn.Linear(DIM, 32)
        self.norm = nn.LayerNorm(32)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(torch.relu(self.norm(self.backbone(x))))).squeeze(-1)


class ToyDataset:
    def __init__(self, n: int = 40, augment: bool = True) -> None:
        g = np.random.default_rng(123)  # fixed data, independent of the global RNGs
        self.x = g.normal(size=(n, DIM)).astype(np.float32)
        self.y = (self.x @ g.normal(size=DIM) + 0.5).astype(np.float32)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.x[i], self.y[i]
        if self.augment:
            x = x + np.random.normal(0, 0.05, DIM).astype(np.float32)
            if random.random() < 0.5:  # y depends on x only through a linear map, so flip both
                x, y = -x, -y + 1.0
        return {"x": torch.from_numpy(np.ascontiguousarray(x)), "y": torch.tensor(y)}


class ToyTask(TrainingTask):
    def __init__(self, n: int = 40, augment: bool = True, dropout: float = 0.1) -> None:
        self.n, self.augment, self.dropout = n, augment, dropout

    def build_model(self) -> nn.Module:
        return ToyModel(self.dropout)

    def train_dataset(self) -> ToyDataset:
        return ToyDataset(self.n, self.augment)

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = model(batch["x"])
        return {"mse": F.mse_loss(pred, batch["y"]), "l1": 0.1 * F.l1_loss(pred, batch["y"])}

    def config_dict(self) -> dict:
        return {"n": self.n, "augment": self.augment, "dropout": self.dropout}


class MaskToyModel(nn.Module):
    """Q mask logits and Q entityness logits per image, from a few convolutions."""

    def __init__(self, queries: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.masks = nn.Conv2d(16, queries, 1)
        self.entityness = nn.Linear(16, queries)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(images)
        return self.entityness(f.mean((2, 3))), self.masks(f)


class RectangleDataset:
    """16×16 images of 1–3 coloured rectangles; targets are their masks (index-seeded, no global RNG)."""

    def __init__(self, n: int = 32) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = np.random.default_rng(i)
        image = np.zeros((3, 16, 16), np.float32)
        masks = []
        for _ in range(g.integers(1, 4)):
            y0, x0 = g.integers(0, 10, 2)
            h, w = g.integers(3, 7, 2)
            m = np.zeros((16, 16), bool)
            m[y0 : y0 + h, x0 : x0 + w] = True
            for prev in masks:
                prev &= ~m  # later rectangles cover earlier ones
            image[:, m] = g.uniform(0.3, 1.0, 3)[:, None]
            masks.append(m)
        keep = [m for m in masks if m.any()]
        return {"image": torch.from_numpy(image), "masks": torch.from_numpy(np.stack(keep))}


class MaskToyTask(TrainingTask):
    """Set prediction with Hungarian matching: exercises SetCriterion inside the Trainer."""

    def __init__(self, n: int = 32) -> None:
        from esgkit.training.criterion import SetCriterion, SetCriterionConfig

        self.n = n
        self.criterion = SetCriterion(SetCriterionConfig(class_weight=1.0, mask_weight=1.0, dice_weight=1.0, num_points=64))

    def build_model(self) -> nn.Module:
        return MaskToyModel()

    def train_dataset(self) -> RectangleDataset:
        return RectangleDataset(self.n)

    def collate(self, samples):
        return {"image": torch.stack([s["image"] for s in samples]), "masks": [s["masks"] for s in samples]}

    def losses(self, model, batch):
        entityness, masks = model(batch["image"])
        return self.criterion(entityness, masks, batch["masks"])
