"""SetCriterion: Hungarian matching + Mask2Former losses over a batch and the decoder layers."""

import pytest
import torch
from scenes import block, two_view_scene

from esgkit.training.criterion import SetCriterion, SetCriterionConfig


def test_set_criterion_prefers_matching_predictions_and_sums_layers():
    preds, targets = two_view_scene()
    crit = SetCriterion(SetCriterionConfig(num_points=0))
    entity = torch.zeros(1, 5, 2)
    good = crit(entity, preds[None], [targets])
    shuffled = crit(entity, preds[None][:, :, [1, 0]], [targets])  # views swapped: nothing fits
    assert good["mask"] < shuffled["mask"] and good["dice"] < shuffled["dice"]
    deep = crit(entity, preds[None], [targets], aux=[(entity, preds[None])])
    for k in ("class", "mask", "dice"):
        assert deep[k].item() == pytest.approx(2 * good[k].item(), rel=1e-6)


def test_set_criterion_gradients_reach_matched_queries_only_through_masks():
    targets = torch.stack([block(0, 8, 0, 8), block(8, 16, 8, 16)])
    masks = torch.randn(1, 4, 16, 16, requires_grad=True)
    cls = torch.zeros(1, 4, requires_grad=True)  # sigmoid entityness
    out = SetCriterion(SetCriterionConfig(num_points=32))(cls, masks, [targets], generator=torch.Generator().manual_seed(0))
    sum(out.values()).backward()
    touched = (masks.grad.abs().sum((-1, -2)) > 0)[0]
    assert touched.sum().item() == 2  # the two matched queries get mask gradients
    assert (cls.grad != 0).all()  # every query gets an entityness gradient


def test_given_match_criterion_keeps_the_pairs_and_ignores_padding():
    """Queries that are their input entities: the given pairs on every layer, no Hungarian; queries
    after an image's count (padding to the batch's largest) take no loss."""
    from esgkit.training.criterion import GivenMatchCriterion

    targets = [torch.stack([block(0, 8, 0, 8), block(8, 16, 8, 16)]), block(0, 16, 0, 4)[None]]
    masks = torch.full((2, 2, 16, 16), -5.0)
    masks[0] = targets[0] * 10 - 5                           # each query reproduces its own entity
    masks[1, 0] = targets[1][0] * 10 - 5
    cls = torch.zeros(2, 2, 2)
    pairs = [(torch.tensor([0, 1]), torch.tensor([0, 1])), (torch.tensor([0]), torch.tensor([0]))]
    crit = GivenMatchCriterion(SetCriterionConfig(num_points=0), pairs, [2, 1])
    assert crit.match(cls, masks, targets) == pairs
    swapped = masks[:, [1, 0]]                               # Hungarian would follow the swap; the given pairs do not
    assert crit(cls, swapped, targets)["mask"] > crit(cls, masks, targets)["mask"]
    moved = cls.clone()
    moved[1, 1] = torch.tensor([9.0, -9.0])                  # image 1's padded query
    moved_masks = masks.clone()
    moved_masks[1, 1] = 5.0
    for k, v in crit(moved, moved_masks, targets).items():
        assert v.item() == pytest.approx(crit(cls, masks, targets)[k].item(), rel=1e-6), k
    nothing = GivenMatchCriterion(SetCriterionConfig(num_points=0), [(torch.zeros(0, dtype=torch.long),) * 2], [0])
    out = nothing(cls[:1], masks[:1], [torch.zeros(0, 16, 16)])
    assert all(torch.isfinite(v) for v in out.values())
