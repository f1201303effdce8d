"""Set-prediction losses in the Mask2Former style, shared by GELLA and CropFormer.

Mask losses (sigmoid BCE + Dice) are computed on importance-sampled points rather than full masks:
``num_points`` points per mask, drawn as ``oversample``·P uniform candidates of which the
``importance``·P most uncertain (predicted logit closest to 0) are kept and the rest are uniform
(ESG_FACTS: 12,544 points, oversample 3.0, importance 0.75). ``num_points=0`` uses every pixel.

Masks may carry a view axis: ``(M, V, H, W)``. Points are then sampled in every view and
concatenated, so one query's loss spans all views (CropFormer's batch-level decoder). An entity absent
from a view has an all-zero target there. Plain ``(M, H, W)`` masks are one view.

Loss sums over masks are divided by ``num_masks`` (the matched targets of the whole batch, averaged
over data-parallel processes by the caller if it wishes), as Mask2Former does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from esgkit.layers.points import point_sample, with_view_axis


def uncertainty(logits: Tensor) -> Tensor:
    """Mask2Former's uncertainty: −|logit| (highest where the prediction is least decided)."""
    return -logits.abs()


def uncertain_point_coords(
    logits: Tensor,
    num_points: int,
    oversample: float = 3.0,
    importance: float = 0.75,
    generator: torch.Generator | None = None,
    score: Callable[[Tensor], Tensor] = uncertainty,
) -> Tensor:
    """Point coordinates (N, P, 2) in [0, 1] for mask logits (N, 1, H, W): the ``importance``·P most
    uncertain of ``oversample``·P random candidates, topped up with uniform random points."""
    n = logits.shape[0]
    num_candidates = max(int(num_points * oversample), num_points)
    candidates = torch.rand(n, num_candidates, 2, generator=generator, device="cpu").to(logits.device)
    scores = score(point_sample(logits.detach().float(), candidates)).squeeze(1)  # (N, K)
    num_important = int(importance * num_points)
    num_random = num_points - num_important
    top = scores.topk(num_important, dim=1).indices  # (N, k)
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        uniform = torch.rand(n, num_random, 2, generator=generator, device="cpu").to(logits.device)
        chosen = torch.cat([chosen, uniform], dim=1)
    return chosen


def sample_mask_points(
    pred_logits: Tensor,
    target_masks: Tensor,
    num_points: int,
    oversample: float = 3.0,
    importance: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Matched predictions and targets as point values, concatenated over views: (M, V·P) each.

    ``pred_logits`` (M, [V,] H, W) and ``target_masks`` (M, [V,] H', W') may differ in resolution;
    both are sampled at the same relative coordinates. ``num_points=0``: targets are resized to the
    prediction's size and every pixel is used.
    """
    pred = with_view_axis(pred_logits)
    target = with_view_axis(target_masks).to(pred.dtype)
    m, v = pred.shape[:2]
    if target.shape[:2] != (m, v):
        raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in M or V")
    if num_points <= 0:
        if target.shape[-2:] != pred.shape[-2:]:
            target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False)
        return pred.reshape(m, -1), target.reshape(m, -1)
    flat_pred = pred.reshape(m * v, 1, *pred.shape[-2:])
    flat_target = target.reshape(m * v, 1, *target.shape[-2:])
    with torch.no_grad():
        coords = uncertain_point_coords(flat_pred, num_points, oversample, importance, generator)
        target_points = point_sample(flat_target, coords).squeeze(1)
    pred_points = point_sample(flat_pred, coords).squeeze(1)
    return pred_points.reshape(m, v * num_points), target_points.reshape(m, v * num_points)


def sigmoid_bce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Σ over masks of the mean per-point BCE, divided by ``num_masks``. Inputs (M, P)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Σ over masks of 1 − (2|p·t| + 1)/(|p| + |t| + 1) with p = σ(logits), divided by ``num_masks``."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def mask_losses(
    pred_logits: Tensor,
    target_masks: Tensor,
    num_masks: float,
    num_points: int = 12544,
    oversample: float = 3.0,
    importance: float = 0.75,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """``{"mask": BCE, "dice": Dice}`` of matched masks (see module docstring for shapes)."""
    if pred_logits.shape[0] == 0:
        zero = pred_logits.sum() * 0.0  # keeps the graph connected (DDP) while contributing nothing
        return {"mask": zero, "dice": zero}
    p, t = sample_mask_points(pred_logits, target_masks, num_points, oversample, importance, generator)
    return {"mask": sigmoid_bce_loss(p, t, num_masks), "dice": dice_loss(p, t, num_masks)}


def entityness_loss(logits: Tensor, matched: Tensor, target_classes: Tensor | None = None, no_object_weight: float = 0.1) -> Tensor:
    """Classification loss of every query against "matched to an entity" or "no object".

    ``logits``: (Q,) or (Q, 1) → sigmoid BCE, target 1 for matched queries and 0 otherwise;
    (Q, K+1) → softmax CE over K classes plus a final no-object class (K = 1 for "entity").
    ``matched``: indices of matched queries; ``target_classes``: their classes (default 0).
    Unmatched queries weigh ``no_object_weight``; the result is the weighted mean (as
    ``F.cross_entropy(weight=...)``), so it does not depend on the number of queries.
    """
    matched = matched.to(logits.device).long()
    q = logits.shape[0]
    if target_classes is None:
        target_classes = torch.zeros(len(matched), dtype=torch.long, device=logits.device)
    if logits.dim() == 1 or logits.shape[-1] == 1:
        x = logits.reshape(q)
        target = torch.zeros(q, dtype=x.dtype, device=x.device)
        target[matched] = 1.0
        weight = torch.full((q,), no_object_weight, dtype=x.dtype, device=x.device)
        weight[matched] = 1.0
        loss = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        return (loss * weight).sum() / weight.sum()
    k1 = logits.shape[-1]
    target = torch.full((q,), k1 - 1, dtype=torch.long, device=logits.device)
    target[matched] = target_classes.to(logits.device).long()
    class_weight = torch.ones(k1, dtype=logits.dtype, device=logits.device)
    class_weight[-1] = no_object_weight
    return F.cross_entropy(logits, target, weight=class_weight)


def association_loss(logits: Tensor, targets: Tensor, pos_weight: float | None = None) -> Tensor:
    """GELLA's L_asso: mean BCE of noun × entity logits (v, q) against the one-to-many ground truth
    G_A ∈ {0, 1}^{v×q} (a plural noun maps to several entities). Empty inputs give 0."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pw)
