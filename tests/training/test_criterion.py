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
