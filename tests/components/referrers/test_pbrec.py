"""PBREC-MT: the proposal vote, the soft targets, the grid geometry and a referral chosen from the
head maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.components.referrers.pbrec import PBRECReferrer, center_maps, consensus_vote, mask_centroids, mass_maps
from esgkit.core import EntityMasks, TextFeatures
from esgkit.layers.overlap import box_iou_matrix, mask_iou_matrix
from esgkit.core.errors import ConfigError
from esgkit.layers.geometry import mask_boxes

TINY = dict(backbone="mobilenetv2_050", stride=16, image_size=64, dim=32, layers=1, heads=2, ffn_dim=64)


def _referrer(**options) -> PBRECReferrer:
    referrer = PBRECReferrer(PBRECReferrer.Config(**{**TINY, **options}))
    referrer.configure(8)
    return referrer.eval()


def _text(n: int = 1) -> TextFeatures:
    tokens = torch.randn(n, 3, 8)
    return TextFeatures(tokens, torch.ones(n, 3, dtype=torch.bool), tokens.mean(1))


def test_vote_with_k1_takes_the_top_pair_and_with_more_lets_cells_outvote_it():
    scores = torch.zeros(2, 2, 2)
    scores[0, 0, 0] = 0.9            # entity 0: the single best cell
    scores[1, 1, :] = 0.8            # entity 1: two cells just below it
    scores[1, 0, 1] = 0.7
    disjoint = lambda ids: np.eye(len(ids))  # noqa: E731
    assert consensus_vote(scores, disjoint, 1) == (0, pytest.approx(0.9))
    entity, score = consensus_vote(scores, disjoint, 4)
    assert entity == 1 and score == pytest.approx(0.8)  # three votes beat one; the best of its pairs
    assert consensus_vote(torch.zeros(2, 2, 2), disjoint, 12) is None


def test_vote_ties_go_to_the_higher_ranked_pair():
    scores = torch.zeros(2, 1, 2)
    scores[0, 0, 0], scores[1, 0, 1] = 0.6, 0.5
    assert consensus_vote(scores, lambda ids: np.eye(len(ids)), 2)[0] == 0


def test_iou_matrices():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :5], masks[1, :5, :5], masks[2, 5:] = True, True, True
    boxes = mask_boxes(masks)
    assert boxes[1].tolist() == [0, 0, 5, 5] and boxes[0].tolist() == [0, 0, 10, 5]
    assert box_iou_matrix(boxes)[0, 1] == pytest.approx(0.5)
    iou = mask_iou_matrix(masks)
    assert iou[0, 1] == pytest.approx(0.5) and iou[0, 2] == 0 and np.allclose(np.diag(iou), 1)


def center_target(box, grid, stride, window=3.0, soft=True):
    return center_maps(torch.tensor([box], dtype=torch.float32), grid, stride, window, soft)[0]


def mass_target(mask, size, grid, stride, radius=2.0, soft=True):
    from esgkit.layers.geometry import cell_coverage

    coverage = cell_coverage(torch.from_numpy(mask[None]), size, grid)
    centroid = torch.from_numpy(mask_centroids(mask[None])).float() * size / max(mask.shape)
    return mass_maps(coverage, centroid, grid, stride, radius, soft)[0]


def test_center_target_peaks_at_the_box_centre_and_stays_inside_it():
    soft = center_target([16, 16, 80, 48], (8, 8), 16)  # a 64×32 box centred at (48, 32)
    assert soft.max() == 1.0 and soft[1:3, 2].min() > 0  # cells around the centre (rows 1..2, col 2)
    ys, xs = torch.nonzero(soft, as_tuple=True)
    assert ((xs + 0.5) * 16 > 16).all() and ((xs + 0.5) * 16 < 80).all() and ((ys + 0.5) * 16 < 48).all()
    assert (xs - 2.5).abs().max() <= 1.5 and (ys - 1.5).abs().max() <= 1.5  # within the 3g window
    hard = center_target([16, 16, 80, 48], (8, 8), 16, soft=False)
    assert torch.equal(hard > 0, soft > 0) and set(hard.unique().tolist()) == {0.0, 1.0}
    tiny = center_target([33, 33, 35, 35], (8, 8), 16)  # no cell centre inside: the centre's cell
    assert tiny.sum() == 1 and tiny[2, 2] == 1


def test_mass_target_is_cell_coverage_near_the_centroid():
    mask = np.zeros((128, 128), bool)
    mask[:, :24] = True  # a full-height bar, 24 px wide: centroid (12, 64)
    target = mass_target(mask, 64, (4, 4), 16, radius=2.0)  # image 128 → input 64: the bar is 12 px wide
    assert target[1, 0] == pytest.approx(12 / 16) and target[2, 0] == pytest.approx(12 / 16)
    assert target[:, 1:].sum() == 0  # not covered
    assert target[:, 0].tolist() == pytest.approx([12 / 16] * 4)  # centres ≤ 2g = 32 px from the centroid (6, 32)
    near = mass_target(mask, 64, (4, 4), 16, radius=1.0)  # 16 px: only the two middle cells (8.2 px away)
    assert near[:, 0].tolist() == pytest.approx([0, 12 / 16, 12 / 16, 0])
    assert mass_target(np.zeros((8, 8), bool), 64, (4, 4), 16).sum() == 0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="multiple of stride"):
        PBRECReferrer(PBRECReferrer.Config(**{**TINY, "image_size": 70}))
    with pytest.raises(ConfigError, match="box_head"):
        PBRECReferrer(PBRECReferrer.Config(**{**TINY, "box_head": "centre"}))


def test_padding_cells_are_masked_and_shapes_follow_the_grid():
    referrer = _referrer()
    assert referrer.grid == (4, 4)
    valid = referrer.valid_cells([(64, 20)])  # a tall image: two columns of cells hold it
    assert valid.view(4, 4)[:, :2].all() and not valid.view(4, 4)[:, 2:].any()
    out = referrer(torch.randn(2, 3, 64, 64), _text(2), valid.expand(2, -1))
    assert out["center"].shape == (2, 4, 4) and out["mass"].shape == (2, 4, 4)


def test_target_maps_of_several_masks_match_one_at_a_time():
    referrer = _referrer()
    masks = np.zeros((3, 48, 80), bool)
    masks[0, 5:20, 4:30], masks[1, 30:46, 50:78], masks[2, 40:42, 10:12] = True, True, True
    together = referrer.target_maps(masks, center_soft=False)
    for k in range(3):
        alone = referrer.target_maps(masks[k : k + 1], center_soft=False)
        assert torch.equal(together["center"][k], alone["center"][0]) and torch.equal(together["mass"][k], alone["mass"][0])
    assert mask_centroids(masks)[2].tolist() == [11.0, 41.0]
    assert together["center"][2].sum() == 1  # too small to hold a cell centre: its centre's cell


def test_refer_picks_the_entity_under_the_best_cells(monkeypatch):
    referrer = _referrer(top_k=4)
    image = np.zeros((64, 64, 3), np.uint8)
    masks = np.zeros((2, 64, 64), bool)
    masks[0, :32, :32] = True   # top-left quarter: cells (0..1, 0..1)
    masks[1, 32:, 32:] = True   # bottom-right
    proposals = EntityMasks(masks, ids=np.array([7, 9]))
    center, mass = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    center[0, 0, 0], mass[0, 3, 3] = 1.0, 1.0
    monkeypatch.setattr(referrer, "head_maps", lambda image, text: ({"center": center, "mass": mass}, (64, 64)))
    (r,) = referrer.refer(image, _text(), proposals)
    assert r.box_entity == 7 and r.box == (0.0, 0.0, 32.0, 32.0)   # the box ranked by center-ness
    assert r.mask_entity == 9 and np.array_equal(r.mask, masks[1])  # the mask by mass-ness
    confident = _referrer(top_k=4, use_confidence=True)
    monkeypatch.setattr(confident, "head_maps", lambda image, text: ({"center": center + 0.5, "mass": mass}, (64, 64)))
    low = EntityMasks(masks, scores=np.array([0.1, 1.0]), ids=np.array([7, 9]))
    assert confident.refer(image, _text(), low)[0].box_entity == 9  # 1.5·0.1 < 0.5·1.0
