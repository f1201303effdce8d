"""CropFormer's crop geometry against an independent statement of the reference rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from esgkit.components.segmenters.cropformer.crops import (
    Region,
    crop_regions,
    cut_views,
    sample_training_regions,
    view_regions,
)

SIZES = [(800, 1333), (1333, 800), (1000, 1000), (101, 333), (97, 61), (2047, 1537), (7, 9), (10, 4)]


def expected_regions(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The rule as ESG_FACTS states it: side int(0.7·S), the two starts 0 and S − side per axis
    (range(0, S, int(0.6·S)) with ends clamped to S), order TL, TR, BL, BR; as (x0, y0, x1, y1)."""
    cw, ch = int(0.7 * width), int(0.7 * height)
    left, right = 0, width - cw
    top, bottom = 0, height - ch
    return [
        (left, top, left + cw, top + ch),
        (right, top, right + cw, top + ch),
        (left, bottom, left + cw, bottom + ch),
        (right, bottom, right + cw, bottom + ch),
    ]


@pytest.mark.parametrize("height,width", SIZES)
def test_four_corner_crops_match_the_reference_rule(height, width):
    got = [(r.x0, r.y0, r.x1, r.y1) for r in crop_regions(height, width)]
    assert got == expected_regions(height, width)


def test_known_numbers():
    # 1333 wide: side int(933.1) = 933, right start 400; 800 high: side 560, bottom start 240.
    regions = crop_regions(800, 1333)
    assert regions[0] == Region(0, 0, 933, 560)
    assert regions[3] == Region(400, 240, 1333, 800)
    # An odd size: 97 high → side int(67.9) = 67, starts 0 and 30; 61 wide → 42, starts 0 and 19.
    assert crop_regions(97, 61)[3] == Region(19, 30, 61, 97)


@pytest.mark.parametrize("height,width", SIZES[:6])
def test_crops_cover_the_image_and_the_centre_four_times(height, width):
    count = np.zeros((height, width), int)
    for r in crop_regions(height, width):
        count[r.y0 : r.y1, r.x0 : r.x1] += 1
    assert count.min() >= 1
    assert count[height // 2, width // 2] == 4
    assert set(np.unique(count)) <= {1, 2, 4}


def test_full_view_comes_first():
    regions = view_regions(50, 80)
    assert regions[0] == Region(0, 0, 80, 50) and len(regions) == 5
    assert view_regions(50, 80, crops=False) == [Region(0, 0, 80, 50)]


def test_crops_are_cut_at_original_resolution_then_resized():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    regions = view_regions(97, 131)
    views = cut_views(image, regions, (40, 54))
    assert views.shape == (5, 3, 40, 54)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    for v, r in enumerate(regions):
        direct = F.interpolate(tensor[..., r.y0 : r.y1, r.x0 : r.x1], size=(40, 54), mode="bilinear",
                               align_corners=False, antialias=True)[0]
        torch.testing.assert_close(views[v], direct)
    # Same size as the region: a plain cut, no resampling.
    same = cut_views(image, [regions[1]], (regions[1].height, regions[1].width))[0]
    assert torch.equal(same, tensor[0, :, regions[1].y0 : regions[1].y1, regions[1].x0 : regions[1].x1])


def test_masks_resize_with_nearest():
    masks = torch.zeros(2, 50, 60)
    masks[0, 10:20, 10:30] = 1
    views = cut_views(masks, view_regions(50, 60), (25, 30), mode="nearest")
    assert set(views.unique().tolist()) <= {0.0, 1.0}


def test_training_uses_full_view_and_one_random_crop():
    crops = crop_regions(90, 120)
    seen = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        regions = sample_training_regions(90, 120, gen)
        assert len(regions) == 2 and regions[0] == Region(0, 0, 120, 90)
        assert regions[1] in crops
        seen.add(crops.index(regions[1]))
    assert seen == {0, 1, 2, 3}
