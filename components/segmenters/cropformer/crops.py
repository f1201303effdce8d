"""CropFormer's crop geometry: four fixed corner crops of the original image.

The rule (reference CropFormer): crop side = int(0.7·W) × int(0.7·H), stride = int(0.6·W) ×
int(0.6·H); crop starts are ``range(0, W, stride)``, each end clamped to W with start = end − crop,
which gives exactly the two starts {0, W − crop} per axis. Order: top-left, top-right, bottom-left,
bottom-right. Crops are cut at the original resolution and then resized to the full view's size
(a ≈1.43× zoom). Training uses one crop drawn at random, test uses all four.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CROP_RATIO = 0.7
STRIDE_RATIO = 0.6


@dataclass(frozen=True)
class Region:
    """A view's region in original pixels: columns [x0, x1), rows [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def _axis_starts(size: int, crop_ratio: float, stride_ratio: float) -> tuple[int, list[int]]:
    crop = int(crop_ratio * size)
    stride = int(stride_ratio * size)
    if crop < 1 or stride < 1:
        raise ValueError(f"image side {size} is too small for crops (crop {crop}, stride {stride})")
    starts: list[int] = []
    for start in range(0, size, stride):
        end = min(start + crop, size)
        starts.append(end - crop)
    # Starts past the last full crop repeat W − crop: keep each once, in order.
    return crop, list(dict.fromkeys(starts))


def crop_regions(
    height: int, width: int, crop_ratio: float = CROP_RATIO, stride_ratio: float = STRIDE_RATIO
) -> list[Region]:
    """The crop regions of an image, row-major (TL, TR, BL, BR for the default ratios)."""
    crop_w, xs = _axis_starts(width, crop_ratio, stride_ratio)
    crop_h, ys = _axis_starts(height, crop_ratio, stride_ratio)
    return [Region(x, y, x + crop_w, y + crop_h) for y in ys for x in xs]


def view_regions(height: int, width: int, crops: bool = True, **ratios: float) -> list[Region]:
    """All views of an image: the full view first, then the crops (if ``crops``)."""
    full = [Region(0, 0, width, height)]
    return full + crop_regions(height, width, **ratios) if crops else full


def cut_views(
    image: np.ndarray | torch.Tensor, regions: list[Region], size: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Cut each region from ``image`` (H, W, C uint8/float array, or a (C, H, W) tensor) at its original
    resolution and resize it to ``size`` = (h, w). Returns float (T, C, h, w).

    Images are resized bilinearly with antialiasing (as PIL's bilinear resize, which the reference's
    detectron2 transforms use, does when shrinking); ``mode="nearest"`` is for masks (pass them as an
    (N, H, W) tensor: channels are entities). Each region is converted to float on its own, so a
    huge image is never held as a whole float copy."""
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    else:
        tensor = image
    views = []
    for r in regions:
        patch = tensor[None, :, r.y0 : r.y1, r.x0 : r.x1].float()
        if (r.height, r.width) != tuple(size):
            if mode == "bilinear":
                patch = F.interpolate(patch, size=size, mode="bilinear", align_corners=False, antialias=True)
            else:
                patch = F.interpolate(patch, size=size, mode=mode)
        views.append(patch[0])
    return torch.stack(views)


def sample_training_regions(
    height: int, width: int, generator: torch.Generator | None = None, **ratios: float
) -> list[Region]:
    """Training views: the full view plus one crop drawn uniformly at random."""
    crops = crop_regions(height, width, **ratios)
    pick = int(torch.randint(len(crops), (1,), generator=generator))
    return [Region(0, 0, width, height), crops[pick]]
