"""Masks as point sets: bilinear sampling at continuous coordinates (Mask2Former's point losses and
matching) and the optional view axis of CropFormer's multi-view masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(masks: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample ``masks`` (N, C, H, W) at ``coords`` (N, P, 2) given as (x, y) in [0, 1].

    Returns (N, C, P), in float32 at least. Coordinates address the pixel grid with pixel centres at (i + 0.5)/W, i.e.
    ``grid_sample(align_corners=False)``.
    """
    dtype = torch.promote_types(masks.dtype, torch.float32)  # half-precision coordinates would be coarse
    grid = (2.0 * coords.to(dtype) - 1.0).unsqueeze(2)  # (N, P, 1, 2) in [-1, 1]
    out = F.grid_sample(masks.to(dtype), grid, mode="bilinear", align_corners=False)
    return out.squeeze(3)


def with_view_axis(masks: Tensor) -> Tensor:
    """(M, H, W) → (M, 1, H, W); (M, V, H, W) unchanged."""
    if masks.dim() == 3:
        return masks.unsqueeze(1)
    if masks.dim() != 4:
        raise ValueError(f"masks must be (M, H, W) or (M, V, H, W), got shape {tuple(masks.shape)}")
    return masks


__all__ = ["point_sample", "with_view_axis"]
