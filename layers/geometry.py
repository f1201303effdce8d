"""The paper's input geometry: an image (or masks) fitted into a square keeping its aspect ratio,
padding at the bottom and right, so CLIP's input, the colormap and the mask targets cover the same
padded square."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_pad(image: torch.Tensor, size: int, mode: str = "bilinear") -> tuple[torch.Tensor, tuple[int, int]]:
    """(C, H, W) → (C, size, size): resize keeping the aspect ratio so both sides are ≤ size, then pad
    with zeros at the bottom and right. Returns the padded image and the (h, w) of the valid area."""
    _, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    resized = F.interpolate(image[None].float(), size=(nh, nw), mode=mode, **kwargs)[0]
    return F.pad(resized, (0, size - nw, 0, size - nh)), (nh, nw)


def sample_masks(masks: np.ndarray, size: int, grid: tuple[int, int]) -> np.ndarray:
    """bool (N, H, W) masks → bool (N, gh, gw): the masks placed like ``resize_pad`` places the image
    (aspect kept, fitted into size×size, padding bottom/right) and sampled at the centres of a gh×gw
    grid over that square (nearest neighbour; the padding is False). Cost N·gh·gw, not N·H·W."""
    n, h, w = masks.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    py = (np.arange(grid[0]) + 0.5) * size / grid[0]
    px = (np.arange(grid[1]) + 0.5) * size / grid[1]
    vy, vx = py < nh, px < nw
    rows = np.minimum((py[vy] * h / nh).astype(int), h - 1)
    cols = np.minimum((px[vx] * w / nw).astype(int), w - 1)
    out = np.zeros((n, *grid), bool)
    out[:, : vy.sum(), : vx.sum()] = masks[:, rows][:, :, cols]
    return out


def cell_coverage(masks: torch.Tensor, size: int, grid: tuple[int, int], chunk: int = 8) -> torch.Tensor:
    """bool (N, H, W) masks → float (N, gh, gw): the share of each cell of a gh×gw grid over the
    size×size square that the mask covers, the masks placed like ``resize_pad`` places the image
    (area resampling, so thin parts still count). Computed ``chunk`` masks at a time to bound memory."""
    n, h, w = masks.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = torch.zeros(n, *grid)
    for k in range(0, n, chunk):
        part = F.interpolate(masks[k : k + chunk, None].float(), size=(nh, nw), mode="area")
        part = F.pad(part, (0, size - nw, 0, size - nh))
        out[k : k + chunk] = F.adaptive_avg_pool2d(part, grid)[:, 0]
    return out


__all__ = ["cell_coverage", "resize_pad", "sample_masks"]
