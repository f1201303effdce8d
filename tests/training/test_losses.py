import math

import pytest
import torch
import torch.nn.functional as F

from esgkit.training.losses import (
    association_loss,
    dice_loss,
    entityness_loss,
    mask_losses,
    point_sample,
    sample_mask_points,
    sigmoid_bce_loss,
    uncertain_point_coords,
)


def test_point_sample_hits_pixel_centres_and_interpolates():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)  # value = 4·row + col
    centres = torch.tensor([[[0.125, 0.125], [0.875, 0.125], [0.375, 0.625]]])  # (x, y)
    assert point_sample(img, centres).flatten().tolist() == [0.0, 3.0, 9.0]
    between = torch.tensor([[[0.25, 0.125]]])  # halfway between pixel (0,0) and (0,1)
    assert point_sample(img, between).item() == pytest.approx(0.5)


def test_bce_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [2.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # row 0: log 2 at both points; row 1: mean(log(1+e^-2), log(1+e^2))
    row1 = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2
    expected = (math.log(2) + row1) / 4  # divided by num_masks
    assert sigmoid_bce_loss(logits, targets, num_masks=4).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_hand_computed():
    big = 50.0
    pred = torch.tensor([[big, big, -big, -big], [big, -big, -big, -big]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    # row 0 perfect: 1 − (2·2+1)/(2+2+1) = 0; row 1 disjoint: 1 − 1/(1+2+1) = 0.75
    assert dice_loss(pred, target, num_masks=1).item() == pytest.approx(0.75, abs=1e-6)
    half = torch.zeros(1, 4)  # p = 0.5 everywhere, t has 2 ones: 1 − (2·1+1)/(2+2+1) = 0.4
    assert dice_loss(half, target[:1], num_masks=2).item() == pytest.approx(0.2, abs=1e-6)


def test_entityness_softmax_ce_with_no_object_weight():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # classes: entity, no-object
    matched = torch.tensor([0])
    # query 0 → entity (weight 1); queries 1, 2 → no-object (weight 0.1)
    ce = lambda row, k: -F.log_softmax(row, -1)[k].item()  # noqa: E731
    expected = (ce(logits[0], 0) + 0.1 * ce(logits[1], 1) + 0.1 * ce(logits[2], 1)) / (1 + 0.1 + 0.1)
    assert entityness_loss(logits, matched, no_object_weight=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_entityness_sigmoid_bce_with_no_object_weight():
    logits = torch.tensor([0.0, 3.0])
    matched = torch.tensor([1])
    # query 1 matched (target 1, weight 1): log(1+e^-3); query 0 unmatched (target 0, weight 0.5): log 2
    expected = (math.log1p(math.exp(-3)) + 0.5 * math.log(2)) / 1.5
    assert entityness_loss(logits, matched, no_object_weight=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_association_loss_hand_computed():
    logits = torch.tensor([[0.0, 4.0], [-4.0, 0.0]])
    g = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # a plural noun → both entities
    expected = (math.log(2) + math.log1p(math.exp(-4)) + math.log1p(math.exp(-4)) + math.log(2)) / 4
    assert association_loss(logits, g).item() == pytest.approx(expected, rel=1e-6)
    assert association_loss(torch.zeros(0, 3), torch.zeros(0, 3)).item() == 0.0


def test_uncertain_points_concentrate_where_logits_are_undecided():
    logits = torch.full((1, 1, 32, 32), 10.0)
    logits[..., 12:20] = 0.0  # undecided band: x in [12/32, 20/32)
    g = torch.Generator().manual_seed(0)
    # 300 candidates, ~65 where the logit is exactly 0 (band interior): the 50 most uncertain are there
    coords = uncertain_point_coords(logits, 50, oversample=6.0, importance=1.0, generator=g)
    x = coords[0, :, 0]
    assert ((x >= 12 / 32) & (x < 20 / 32)).all()
    coords = uncertain_point_coords(logits, 200, oversample=3.0, importance=0.0, generator=g)
    in_band = ((coords[0, :, 0] >= 12 / 32) & (coords[0, :, 0] < 20 / 32)).float().mean().item()
    assert in_band < 0.45  # uniform: about a quarter


def test_mask_losses_full_resolution_matches_direct_formula():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 8, 8, generator=g)
    target = torch.rand(3, 8, 8, generator=g) > 0.5
    out = mask_losses(pred, target, num_masks=3, num_points=0)
    t = target.float().reshape(3, -1)
    p = pred.reshape(3, -1)
    assert out["mask"].item() == pytest.approx(F.binary_cross_entropy_with_logits(p, t).item(), rel=1e-5)
    probs = p.sigmoid()
    dice = 1 - (2 * (probs * t).sum(1) + 1) / (probs.sum(1) + t.sum(1) + 1)
    assert out["dice"].item() == pytest.approx(dice.mean().item(), rel=1e-5)


def test_point_sampled_losses_approximate_full_mask_losses():
    # large blocks at 256², so the few points that bilinear sampling blends at edges (and with the
    # zero padding at the border, as Mask2Former's point_sample does) hardly matter
    target = torch.zeros(2, 256, 256, dtype=torch.bool)
    target[0, :128] = True
    target[1, :, 64:192] = True
    pred = torch.where(target, 2.0, -1.0)
    g = torch.Generator().manual_seed(0)
    full = mask_losses(pred, target, 2, num_points=0)
    sampled = mask_losses(pred, target, 2, num_points=4000, oversample=3.0, importance=0.0, generator=g)
    assert sampled["mask"].item() == pytest.approx(full["mask"].item(), rel=0.03)
    assert sampled["dice"].item() == pytest.approx(full["dice"].item(), rel=0.03)


def test_view_axis_concatenates_points_over_views():
    pred = torch.randn(2, 3, 8, 8)
    target = torch.rand(2, 3, 16, 16) > 0.5
    p, t = sample_mask_points(pred, target, num_points=10, generator=torch.Generator().manual_seed(0))
    assert p.shape == t.shape == (2, 30)
    p, t = sample_mask_points(pred, target, num_points=0)
    assert p.shape == t.shape == (2, 3 * 64)


def test_mask_losses_have_gradients_and_handle_no_matches():
    pred = torch.randn(2, 8, 8, requires_grad=True)
    out = mask_losses(pred, torch.ones(2, 8, 8), num_masks=2, num_points=16)
    (out["mask"] + out["dice"]).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    empty = mask_losses(torch.zeros(0, 8, 8), torch.zeros(0, 8, 8), num_masks=1)
    assert empty["mask"].item() == 0.0 and empty["dice"].item() == 0.0
