"""The paper's input geometry: an image (or masks) fitted into a square keeping its aspect ratio,
padding at the bottom and right, so CLIP's input, the colormap and the mask targets cover the same
padded square."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from esgkit.core.errors import InputError


def resize_pad(image: torch.Tensor, size: int, mode: str = "bilinear") -> tuple[torch.Tensor, tuple[int, int]]:
    """(C, H, W) → (C, size, size): resize keeping the aspect ratio so both sides are ≤ size, then pad
    with zeros at the bottom and right. Returns the padded image and the (h, w) of the valid area."""
    _, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    resized = F.interpolate(image[None].float(), size=(nh, nw), mode=mode, **kwargs)[0]
    return F.pad(resized, (0, size - nw, 0, size - nh)), (nh, nw)


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # on 0..1 inputs (timm's convention)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_input(image: np.ndarray, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (H, W, 3) → ImageNet-normalised float (3, size, size) placed by ``resize_pad``, and the
    (h, w) of the image inside it: the input of the referrers' timm backbones."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return resize_pad((x - mean) / std, size)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """float (N, 4) [x, y, w, h] boxes of bool (N, H, W) masks (COCO's: w = x_max − x_min + 1;
    an empty mask gets a zero box)."""
    out = np.zeros((len(masks), 4))
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows):
            out[k] = [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
    return out


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


def valid_cells(sizes: list[tuple[int, int]], stride: int, grid: tuple[int, int]) -> torch.Tensor:
    """bool (B, h·w): the cells of a stride-``stride`` grid over the padded square that hold some of
    each image ((h, w) of the image inside the square) — the rest is padding, never attended."""
    out = torch.zeros(len(sizes), *grid, dtype=torch.bool)
    for b, (h, w) in enumerate(sizes):
        out[b, : -(-h // stride), : -(-w // stride)] = True
    return out.flatten(1)



def logits_to_image(logits: torch.Tensor, size: int, valid: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) logits over the padded ``size``² square → (B, H, W) at the image's own ``shape``: upsampled
    to the square, the padding (outside ``valid``, the (h, w) ``resize_pad`` gave) cut off, resized."""
    up = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return F.interpolate(up[:, :, : valid[0], : valid[1]], size=shape, mode="bilinear", align_corners=False)[:, 0]


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "cell_coverage", "imagenet_input", "logits_to_image", "mask_boxes",
           "resize_pad", "sample_masks", "valid_cells"]
