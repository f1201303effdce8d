"""Fixed sine position encodings (Vaswani et al.; DETR's 2-D form): the referring encoders add them to
the queries and keys of their transformers, 2-D for image grids and 1-D for text, so no learned table
ties a model to one grid size."""

from __future__ import annotations

import math

import torch


def _frequencies(n: int, temperature: float, device: torch.device | None) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / n)


def _interleave(pos: torch.Tensor) -> torch.Tensor:
    """(..., n) angles → (..., n) with sin on even and cos on odd channels."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_1d(length: int, dim: int, temperature: float = 10000.0, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) encodings of positions 0..length-1 (``dim`` even)."""
    if dim % 2:
        raise ValueError(f"sine position encoding needs an even dimension, got {dim}")
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None] / _frequencies(dim, temperature, device)
    return _interleave(pos)


def sine_2d(height: int, width: int, dim: int, temperature: float = 10000.0,
            device: torch.device | None = None) -> torch.Tensor:
    """(height·width, dim) encodings of a row-major grid: half the channels encode y, half x, each
    normalised to (0, 2π] as DETR does, so grids of different sizes share one scale (``dim`` % 4 == 0)."""
    if dim % 4:
        raise ValueError(f"2-D sine position encoding needs a dimension divisible by 4, got {dim}")
    half, scale = dim // 2, 2 * math.pi
    y = (torch.arange(1, height + 1, dtype=torch.float32, device=device) / height * scale)[:, None]
    x = (torch.arange(1, width + 1, dtype=torch.float32, device=device) / width * scale)[:, None]
    freq = _frequencies(half, temperature, device)
    ey, ex = _interleave(y / freq), _interleave(x / freq)  # (h, half), (w, half)
    return torch.cat((ey[:, None].expand(height, width, half), ex[None].expand(height, width, half)), -1).reshape(
        height * width, dim)


__all__ = ["sine_1d", "sine_2d"]
