"""training/mask_augment.py: perturbed masks stay binary, non-empty and inside the image; each
operation does what it says; the same generator seed gives the same masks."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import FUZZ
from esgkit.training.mask_augment import MaskNoise, perturb_masks

NONE = MaskNoise(merge=0.0, split=0.0, jitter=0.0, drop=0.0)


def _tiles(n=4, side=32):
    """n disjoint vertical stripes that touch each other."""
    masks = np.zeros((n, side, side), bool)
    for k in range(n):
        masks[k, :, k * side // n:(k + 1) * side // n] = True
    return masks


def test_no_noise_is_the_identity():
    masks = _tiles()
    assert np.array_equal(perturb_masks(masks, np.random.default_rng(0), NONE), masks)


def test_size_limits_keep_large_entities_whole():
    masks = _tiles()  # each stripe is 25 % of the image
    noise = MaskNoise(merge=1, split=1, jitter=0, drop=1)  # local_below 10 %, drop_below 2 %
    assert np.array_equal(perturb_masks(masks, np.random.default_rng(0), noise), masks)


def test_split_cuts_every_entity_in_two_pieces_that_cover_it():
    masks = _tiles()
    out = perturb_masks(masks, np.random.default_rng(0), MaskNoise(merge=0, split=1, jitter=0, drop=0, local_below=1))
    assert len(out) == 2 * len(masks)
    for k in range(len(masks)):
        a, b = out[2 * k], out[2 * k + 1]
        assert not (a & b).any() and np.array_equal(a | b, masks[k])


def test_merge_joins_touching_entities_only():
    masks = np.zeros((3, 20, 20), bool)
    masks[0, :, :5], masks[1, :, 5:10], masks[2, 15:, 15:] = True, True, True  # 0 and 1 touch; 2 is apart
    out = perturb_masks(masks, np.random.default_rng(0), MaskNoise(merge=1, split=0, jitter=0, drop=0, local_below=1))
    assert len(out) == 2
    assert any(np.array_equal(m, masks[0] | masks[1]) for m in out)
    assert any(np.array_equal(m, masks[2]) for m in out)


def test_drop_everything_keeps_the_largest():
    masks = _tiles()
    masks[0, :, :] = False
    masks[0, :5, :5] = True
    out = perturb_masks(masks, np.random.default_rng(0), MaskNoise(merge=0, split=0, jitter=0, drop=1, drop_below=1))
    assert len(out) == 1 and out[0].sum() == max(m.sum() for m in masks)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), rates=st.tuples(*[st.floats(0, 1)] * 4))
def test_perturbed_masks_are_nonempty_binary_and_reproducible(seed, n, rates):
    masks = _tiles(n, 24)
    noise = MaskNoise(*rates)
    out = perturb_masks(masks, np.random.default_rng(seed), noise)
    assert out.dtype == bool and out.shape[1:] == masks.shape[1:] and len(out) >= 1
    assert all(m.any() for m in out)
    assert np.array_equal(out, perturb_masks(masks, np.random.default_rng(seed), noise))
