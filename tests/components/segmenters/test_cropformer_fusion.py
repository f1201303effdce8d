"""CropFormer's inference fusion on hand-made logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from esgkit.components.segmenters.cropformer.crops import Region, view_regions
from esgkit.components.segmenters.cropformer.fusion import (
    bilinear_taps,
    fuse_views,
    fuse_views_reference,
    fused_probabilities,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_pixels_covered_by_one_two_and_four_crops_get_the_expected_average():
    # 100×100: crops of 70 starting at 0 and 30 → x<30 left crops only, 30≤x<70 both, x≥70 right.
    height = width = 100
    regions = view_regions(height, width)
    p_full, p_tl, p_tr, p_bl, p_br = 0.9, 0.1, 0.3, 0.5, 0.7
    # Constant logits stay constant through both bilinear resizes, so σ is exactly known per view.
    logits = torch.tensor([logit(p) for p in (p_full, p_tl, p_tr, p_bl, p_br)]).view(5, 1, 1, 1)
    logits = logits.expand(5, 1, 12, 12).clone()
    prob = fused_probabilities(logits, regions, (45, 45), (height, width))[0]
    expect = {
        (10, 10): (p_full + p_tl) / 2,  # TL only
        (10, 90): (p_full + p_tr) / 2,  # TR only
        (90, 10): (p_full + p_bl) / 2,  # BL only
        (90, 90): (p_full + p_br) / 2,  # BR only
        (10, 50): (p_full + p_tl + p_tr) / 3,  # TL and TR
        (50, 10): (p_full + p_tl + p_bl) / 3,  # TL and BL
        (50, 50): (p_full + p_tl + p_tr + p_bl + p_br) / 5,  # all four
    }
    for (y, x), value in expect.items():
        assert float(prob[y, x]) == pytest.approx(value, abs=1e-6), (y, x)
    # Whole zones, not just sample pixels.
    assert torch.allclose(prob[30:70, 30:70], torch.tensor((0.9 + 0.1 + 0.3 + 0.5 + 0.7) / 5), atol=1e-6)
    assert torch.allclose(prob[:30, 30:70], torch.tensor((0.9 + 0.1 + 0.3) / 3), atol=1e-6)


def test_separable_resize_matches_interpolate():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 17, 23)
    out = torch.nn.functional.interpolate(x, size=(41, 9), mode="bilinear", align_corners=False)
    yi0, yi1, yw0, yw1 = bilinear_taps(17, 41)
    xi0, xi1, xw0, xw1 = bilinear_taps(23, 9)
    h = x[..., xi0] * xw0 + x[..., xi1] * xw1
    v = h[..., yi0, :] * yw0[:, None] + h[..., yi1, :] * yw1[:, None]
    torch.testing.assert_close(v, out, atol=1e-5, rtol=1e-5)  # float rounding order differs


@pytest.mark.parametrize("size", [(97, 131), (64, 64), (131, 61)])
def test_chunked_fusion_equals_the_direct_computation(size):
    torch.manual_seed(1)
    regions = view_regions(*size)
    logits = torch.randn(5, 7, 12, 16) * 3
    logits[:, 4] = -logits[:, 4].abs() - 0.01  # never above 0.5: skipped by the chunked fusion
    scores = torch.rand(7)
    chunked = fuse_views(logits, scores, regions, (45, 60), size, chunk_queries=3, band_elements=700)
    direct = fuse_views_reference(logits, scores, regions, (45, 60), size)
    assert np.array_equal(chunked.labels, direct.labels)
    np.testing.assert_allclose(chunked.scores, direct.scores, atol=1e-6)


def test_padding_is_cut_before_resizing_to_the_region():
    # Logits positive only on the padded border (input 40×40 padded to 64×64): nothing survives.
    logits = torch.full((1, 1, 16, 16), -8.0)
    logits[..., 11:, :] = 8.0
    logits[..., :, 11:] = 8.0
    fused = fuse_views(logits, torch.tensor([0.9]), [Region(0, 0, 50, 50)], (40, 40), (50, 50))
    assert (fused.labels[:30, :30] == -1).all()


def test_higher_scores_paint_over_lower_ones_and_final_score_is_s_times_mean_p():
    size = (40, 40)
    full = [Region(0, 0, 40, 40)]
    logits = torch.full((1, 3, 10, 10), -6.0)
    logits[0, 0] = 4.0  # query 0: everywhere
    logits[0, 1, :, :5] = 6.0  # query 1: left half
    logits[0, 2, :5, :5] = 5.0  # query 2: top-left quarter, but lowest score
    scores = torch.tensor([0.5, 0.8, 0.3])
    fused = fuse_views(logits, scores, full, size, size)
    prob = fused_probabilities(logits, full, size, size)
    on = prob > 0.5
    # Ascending score order 2, 0, 1: query 1 wins its half, query 0 the rest; query 2 is painted over.
    expected = torch.full(size, -1, dtype=torch.long)
    for q in (2, 0, 1):
        expected[on[q]] = q
    assert np.array_equal(fused.labels, expected.numpy())
    assert set(np.unique(fused.labels)) == {0, 1}
    assert fused.scores[2] == 0
    for q in (0, 1):
        region = torch.from_numpy(fused.labels == q)
        assert fused.scores[q] == pytest.approx(float(scores[q] * prob[q][region].mean()), rel=1e-5)
    entities = fused.to_entity_masks()
    assert list(entities.ids) == [1, 0]  # highest final score first
    assert not (entities.masks.sum(0) > 1).any()  # no overlap
    # Swapping the scores of queries 0 and 1 lets query 0 cover everything.
    swapped = fuse_views(logits, torch.tensor([0.8, 0.5, 0.3]), full, size, size)
    assert (swapped.labels == 0).all()


def test_equal_scores_later_query_wins():
    size = (16, 16)
    logits = torch.full((1, 2, 4, 4), 3.0)
    fused = fuse_views(logits, torch.tensor([0.5, 0.5]), [Region(0, 0, 16, 16)], size, size)
    assert (fused.labels == 1).all()


def test_nothing_above_threshold_gives_no_entities():
    logits = torch.full((5, 4, 8, 8), -3.0)
    fused = fuse_views(logits, torch.rand(4), view_regions(30, 30), (32, 32), (30, 30))
    assert (fused.labels == -1).all()
    assert len(fused.to_entity_masks()) == 0


def test_iter_masks_yields_the_entity_masks_one_at_a_time():
    torch.manual_seed(2)
    size = (37, 53)
    fused = fuse_views(torch.randn(5, 6, 10, 14) * 3, torch.rand(6), view_regions(*size), (40, 56), size)
    dense = fused.to_entity_masks()
    walked = [(q, mask.copy(), score) for q, mask, score in fused.iter_masks()]
    assert len(dense) > 1 and [q for q, _, _ in walked] == dense.ids.tolist()
    for (_, mask, score), expected, expected_score in zip(walked, dense.masks, dense.scores):
        assert np.array_equal(mask, expected) and score == pytest.approx(float(expected_score))


def test_score_threshold_keeps_low_scoring_queries_from_painting():
    size = (40, 40)
    full = [Region(0, 0, 40, 40)]
    logits = torch.full((1, 2, 10, 10), -6.0)
    logits[0, 0] = 4.0  # query 0: everywhere, low score
    logits[0, 1, :, :5] = 6.0  # query 1: left half
    scores = torch.tensor([0.3, 0.8])
    kept = fuse_views(logits, scores, full, size, size)
    assert set(np.unique(kept.labels)) == {0, 1}
    cut = fuse_views(logits, scores, full, size, size, score_threshold=0.5)
    assert set(np.unique(cut.labels)) == {-1, 1} and cut.scores[0] == 0
    assert np.array_equal(cut.labels == 1, kept.labels == 1)  # the kept query's mask is unchanged
