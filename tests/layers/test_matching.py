import pytest
import torch
import torch.nn.functional as F

from scenes import block, logits, two_view_scene

from esgkit.layers.matching import MatchCosts, hungarian_match, pairwise_bce_cost, pairwise_dice_cost


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


@pytest.mark.parametrize("costs", [FULL, POINTS], ids=["full-masks", "points"])
def test_joint_cross_view_matching_assigns_one_query_per_entity_across_views(costs):
    preds, targets = two_view_scene()
    q, t = hungarian_match(None, preds, targets, costs=costs, generator=torch.Generator().manual_seed(0))
    assignment = dict(zip(t.tolist(), q.tolist()))
    assert assignment == {0: 1, 1: 0, 2: 2}  # one query per entity, consistent over both views
    assert len(set(q.tolist())) == 3

    # matching view 1 alone (the entities present there: E0, E1) would pick the distractor q3 for E0
    q_v1, t_v1 = hungarian_match(None, preds[:, 1], targets[:2, 1], costs=FULL)
    assert dict(zip(t_v1.tolist(), q_v1.tolist()))[0] == 3
