import pytest
import torch
import torch.nn.functional as F

from esgkit.training.criterion import SetCriterion, SetCriterionConfig
from esgkit.training.matching import MatchCosts, hungarian_match, pairwise_bce_cost, pairwise_dice_cost


def block(y0, y1, x0, x1, size=16):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def logits(mask):
    return torch.where(mask, 8.0, -8.0)


FULL = MatchCosts(num_points=0)
POINTS = MatchCosts(num_points=256)


def test_pairwise_costs_equal_elementwise_losses():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 30, generator=g)
    target = (torch.rand(3, 30, generator=g) > 0.5).float()
    bce, dice = pairwise_bce_cost(pred, target), pairwise_dice_cost(pred, target)
    for i in range(4):
        for j in range(3):
            assert bce[i, j].item() == pytest.approx(F.binary_cross_entropy_with_logits(pred[i], target[j]).item(), rel=1e-5)
            p = pred[i].sigmoid()
            d = 1 - (2 * (p * target[j]).sum() + 1) / (p.sum() + target[j].sum() + 1)
            assert dice[i, j].item() == pytest.approx(d.item(), rel=1e-5)


@pytest.mark.parametrize("costs", [FULL, POINTS], ids=["full-masks", "points"])
def test_recovers_a_permutation(costs):
    targets = torch.stack([block(0, 8, 0, 8), block(8, 16, 0, 16), block(0, 8, 8, 16)])
    order = [2, 0, 1]  # query q predicts target order[q]; queries 3, 4 predict nothing
    preds = torch.stack([logits(targets[i]) for i in order] + [torch.full((16, 16), -8.0)] * 2)
    q, t = hungarian_match(None, preds, targets, costs=costs, generator=torch.Generator().manual_seed(0))
    assert q.tolist() == [0, 1, 2]
    assert t.tolist() == order


def test_lower_resolution_predictions_against_full_resolution_targets():
    targets = torch.stack([block(0, 32, 0, 32, 64), block(32, 64, 0, 64, 64)])
    preds = torch.stack([logits(block(8, 16, 0, 16)), logits(block(0, 8, 0, 8))])  # 16² predictions
    q, t = hungarian_match(None, preds, targets, costs=FULL)
    assert dict(zip(q.tolist(), t.tolist())) == {0: 1, 1: 0}


def test_class_cost_breaks_ties_between_identical_masks():
    target = block(0, 8, 0, 8)[None]
    preds = torch.stack([logits(target[0])] * 2)
    for entityness, winner in [(torch.tensor([-3.0, 3.0]), 1), (torch.tensor([[3.0, 0.0], [-3.0, 0.0]]), 0)]:
        q, _ = hungarian_match(entityness, preds, target, costs=FULL)  # sigmoid (Q,) and softmax (Q, 2)
        assert q.tolist() == [winner]


def test_fewer_queries_than_targets_and_no_targets():
    targets = torch.stack([block(0, 4, 0, 4), block(4, 8, 0, 4), block(8, 12, 0, 4)])
    preds = logits(targets[1])[None]
    q, t = hungarian_match(None, preds, targets, costs=FULL)
    assert q.tolist() == [0] and t.tolist() == [1]
    q, t = hungarian_match(None, preds, targets[:0], costs=FULL)
    assert q.numel() == 0 and t.numel() == 0


def _two_view_scene():
    """Entities E0, E1 in both views; E2 only in view 0 (all zero in view 1). Query q3 fits E0 in view 1
    better than q1 does, but is wrong in view 0; q1 fits E0 in both views."""
    empty = torch.zeros(16, 16, dtype=torch.bool)
    e0 = [block(0, 6, 0, 6), block(2, 10, 2, 10)]
    e1 = [block(10, 16, 0, 16), block(12, 16, 0, 16)]
    e2 = [block(0, 6, 10, 16), empty]
    targets = torch.stack([torch.stack(e) for e in (e0, e1, e2)])  # (N=3, V=2, 16, 16)
    q0 = [e1[0], e1[1]]
    q1 = [e0[0], block(3, 11, 3, 11)]  # right in view 0, one pixel off in view 1
    q2 = [e2[0], empty]
    q3 = [e2[0], e0[1]]  # wrong in view 0, perfect in view 1
    q4 = [empty, empty]
    preds = torch.stack([torch.stack([logits(m) for m in q]) for q in (q0, q1, q2, q3, q4)])  # (Q=5, V=2, 16, 16)
    return preds, targets


@pytest.mark.parametrize("costs", [FULL, POINTS], ids=["full-masks", "points"])
def test_joint_cross_view_matching_assigns_one_query_per_entity_across_views(costs):
    preds, targets = _two_view_scene()
    q, t = hungarian_match(None, preds, targets, costs=costs, generator=torch.Generator().manual_seed(0))
    assignment = dict(zip(t.tolist(), q.tolist()))
    assert assignment == {0: 1, 1: 0, 2: 2}  # one query per entity, consistent over both views
    assert len(set(q.tolist())) == 3

    # matching view 1 alone (the entities present there: E0, E1) would pick the distractor q3 for E0
    q_v1, t_v1 = hungarian_match(None, preds[:, 1], targets[:2, 1], costs=FULL)
    assert dict(zip(t_v1.tolist(), q_v1.tolist()))[0] == 3


def test_set_criterion_prefers_matching_predictions_and_sums_layers():
    preds, targets = _two_view_scene()
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
