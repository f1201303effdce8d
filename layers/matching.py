"""Hungarian matching of predicted queries to target entity masks (scipy ``linear_sum_assignment``).

Cost of assigning query q to entity n (Mask2Former's matcher):

    C = w_class · (−p_q(entity)) + w_mask · BCE(mask_q, target_n) + w_dice · Dice(mask_q, target_n)

computed on ``num_points`` points drawn uniformly at random (the same points for every pair), or on
every pixel (``num_points=0``; targets resized to the prediction's size — use a low resolution).

**Joint cross-view matching** (CropFormer's batch-level decoder): masks carry a view axis,
predictions (Q, V, H, W) and targets (N, V, H', W') where an entity absent from a view is all zero
there. Points are drawn in every view and concatenated, so one assignment holds for all views: each
entity gets one query whose masks must fit it in every view at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .points import point_sample, with_view_axis


@dataclass
class MatchCosts:
    """Weights of the matching cost terms (CropFormer / Mask2Former defaults) and the point count."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    num_points: int = 12544  # per view; 0 = full masks


def class_cost(class_logits: Tensor, target_classes: Tensor) -> Tensor:
    """(Q, N) cost −p_q(class_n). ``class_logits`` (Q,)/(Q, 1): sigmoid entityness;
    (Q, K+1): softmax over K classes and a final no-object class."""
    if class_logits.dim() == 1 or class_logits.shape[-1] == 1:
        prob = class_logits.reshape(-1).float().sigmoid()
        return -prob[:, None].expand(-1, len(target_classes))
    prob = class_logits.float().softmax(-1)
    return -prob[:, target_classes.long()]


def pairwise_bce_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, N) mean per-point BCE between every prediction (Q, P) and every target (N, P).

    BCE(x, t) = softplus(x) − x·t, so the pairwise mean is a matrix product."""
    p = logits.shape[1]
    return (F.softplus(logits).sum(1, keepdim=True) - logits @ targets.T) / p


def pairwise_dice_cost(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, N) Dice cost 1 − (2 p·t + 1)/(|p| + |t| + 1) with p = σ(logits)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(1)[:, None] + targets.sum(1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def _points(pred: Tensor, target: Tensor, num_points: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Predictions (Q, V·P) and targets (N, V·P) at shared points (uniform per view), or full masks."""
    pred = with_view_axis(pred).float()
    target = with_view_axis(target).float()
    q, v = pred.shape[:2]
    n = target.shape[0]
    if target.shape[1] != v:
        raise ValueError(f"predictions have {v} view(s) but targets have {target.shape[1]}")
    if num_points <= 0:
        if target.shape[-2:] != pred.shape[-2:]:
            target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False)
        return pred.reshape(q, -1), target.reshape(n, -1)
    coords = torch.rand(1, v * num_points, 2, generator=generator, device="cpu").to(pred.device)
    pred_pts, target_pts = [], []
    for view in range(v):  # the same points for all queries and targets; fresh points per view
        c = coords[:, view * num_points : (view + 1) * num_points]
        pred_pts.append(point_sample(pred[:, view : view + 1], c.expand(q, -1, -1)).squeeze(1))
        target_pts.append(point_sample(target[:, view : view + 1], c.expand(n, -1, -1)).squeeze(1))
    return torch.cat(pred_pts, 1), torch.cat(target_pts, 1)


@torch.no_grad()
def match_cost(
    class_logits: Tensor | None,
    pred_masks: Tensor,
    target_masks: Tensor,
    target_classes: Tensor | None = None,
    costs: MatchCosts | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The (Q, N) cost matrix (see module docstring). ``class_logits=None`` drops the class term."""
    costs = costs or MatchCosts()
    n = target_masks.shape[0]
    if target_classes is None:
        target_classes = torch.zeros(n, dtype=torch.long, device=pred_masks.device)
    pred, target = _points(pred_masks, target_masks, costs.num_points, generator)
    cost = costs.mask_weight * pairwise_bce_cost(pred, target) + costs.dice_weight * pairwise_dice_cost(pred, target)
    if class_logits is not None and costs.class_weight:
        cost = cost + costs.class_weight * class_cost(class_logits, target_classes.to(class_logits.device))
    return cost


def hungarian_match(
    class_logits: Tensor | None,
    pred_masks: Tensor,
    target_masks: Tensor,
    target_classes: Tensor | None = None,
    costs: MatchCosts | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Optimal one-to-one assignment of queries to target entities of one image.

    Shapes: ``class_logits`` (Q,) or (Q, K+1) or None; ``pred_masks`` logits (Q, H, W) or
    (Q, V, H, W) for the joint cross-view matching; ``target_masks`` (N, H', W') or (N, V, H', W').
    Returns ``(query_idx, target_idx)``, int64 on the CPU, sorted by query; min(Q, N) pairs.
    """
    q, n = pred_masks.shape[0], target_masks.shape[0]
    if q == 0 or n == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    cost = match_cost(class_logits, pred_masks, target_masks, target_classes, costs, generator).cpu().double()
    cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)  # scipy rejects non-finite costs
    rows, cols = linear_sum_assignment(cost.numpy())
    order = np.argsort(rows)
    return torch.as_tensor(rows[order], dtype=torch.long), torch.as_tensor(cols[order], dtype=torch.long)


__all__ = ["MatchCosts", "class_cost", "hungarian_match", "match_cost", "pairwise_bce_cost", "pairwise_dice_cost"]
