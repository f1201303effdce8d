"""Overlay pictures a person can read: a palette of distinct colours, outlines with a contrasting
halo over a light fill, labels that neither overlap nor leave the image, and a legend strip."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from esgkit.layers.painting import (
    DARK, FILL_ALPHA, LIGHT, OUTLINE_WIDTH, PALETTE, contrast, dilate, distinct_colors, draw_entities, draw_overlay,
    erode, place_labels,
)

MIN_RGB_DISTANCE = 50  # the palette's is 54.3 (CIELAB ΔE 35.9)


def test_the_palette_colours_are_pairwise_distinct_and_readable():
    colors = np.asarray(PALETTE, float)
    assert len(PALETTE) == 20 and len(set(PALETTE)) == 20
    distances = [np.linalg.norm(a - b) for a, b in itertools.combinations(colors, 2)]
    assert min(distances) > MIN_RGB_DISTANCE
    assert (colors.max(1) - colors.min(1)).min() >= 60  # vivid, never greyish …
    for ref in ((0, 0, 0), (255, 255, 255)):  # … nor close to a halo or the legend's white paper
        assert np.linalg.norm(colors - ref, axis=1).min() > 2 * MIN_RGB_DISTANCE
    assert contrast((255, 192, 0)) == DARK and contrast((24, 128, 88)) == LIGHT


def _square(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_mask_is_outlined_in_its_colour_with_a_halo_and_lightly_filled():
    image = np.full((40, 50, 3), 100, np.uint8)
    mask = _square(40, 50, 10, 30, 10, 40)
    color = (0, 128, 248)
    out = draw_overlay(image, [mask], [color])
    assert out.shape == image.shape and out.dtype == np.uint8
    line = mask & ~erode(mask, OUTLINE_WIDTH)
    assert (out[line] == color).all()
    halo = (dilate(mask) & ~mask) | (erode(mask, OUTLINE_WIDTH) & ~erode(mask, OUTLINE_WIDTH + 1))
    assert (out[halo] == contrast(color)).all()
    inside = erode(mask, OUTLINE_WIDTH + 1)
    fill = np.rint((1 - FILL_ALPHA / 2) * 100 + FILL_ALPHA / 2 * np.asarray(color))  # over LARGE: half
    assert (out[inside] == fill).all()  # light: the object's own colour still dominates
    assert (out[~dilate(mask)] == 100).all()  # nothing outside the mask and its 1-px halo
    small = _square(40, 50, 10, 20, 10, 20)  # 5% of the image
    fill = np.rint((1 - FILL_ALPHA) * 100 + FILL_ALPHA * np.asarray(color))
    assert (draw_overlay(image, [small], [color])[erode(small, OUTLINE_WIDTH + 1)] == fill).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(30, 200), st.integers(30, 200), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_labels_never_overlap_and_stay_inside_the_image(h, w, n, seed):
    rng = np.random.default_rng(seed)
    anchors = [(float(x), float(y)) for x, y in zip(rng.uniform(-20, w + 20, n), rng.uniform(-20, h + 20, n))]
    sizes = [(int(a), int(b)) for a, b in zip(rng.integers(4, 90, n), rng.integers(6, 20, n))]
    boxes = place_labels(anchors, sizes, (h, w))
    for box, (lw, lh) in zip(boxes, sizes):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        assert 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h and (x1 - x0, y1 - y0) == (lw, lh)
    placed = [b for b in boxes if b is not None]
    for a, b in itertools.combinations(placed, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert placed or all(lw > w or lh > h for lw, lh in sizes) or n == 0


def test_crowded_labels_move_aside_and_a_label_too_big_is_dropped():
    anchors = [(50.0, 50.0)] * 3 + [(99.0, 0.0)]
    boxes = place_labels(anchors, [(30, 10)] * 4, (100, 100))
    assert boxes[0] == (35, 45, 65, 55)  # alone: centred on its anchor
    assert boxes[1] != boxes[0] and boxes[2] not in (boxes[0], boxes[1])
    assert boxes[3] == (70, 0, 100, 10)  # at the corner: clamped in, not cut
    assert place_labels([(5.0, 5.0)], [(200, 10)], (100, 100)) == [None]
    assert place_labels([None], [(10, 10)], (100, 100)) == [None]


def test_labels_and_a_legend_are_drawn_inside_the_picture():
    image = np.full((60, 80, 3), 200, np.uint8)
    masks = [_square(60, 80, 5, 30, 50, 80), _square(60, 80, 35, 60, 0, 30)]
    plain = draw_overlay(image, masks, PALETTE[:2])
    labelled = draw_overlay(image, masks, PALETTE[:2], labels=["sky", ""])
    changed = np.nonzero((labelled != plain).any(2))
    assert labelled.shape == image.shape and len(changed[0])
    assert changed[1].min() >= 30 and changed[0].max() < 35  # only the first mask's label, clamped in
    with_legend = draw_overlay(image, masks, PALETTE[:2], legend=[("circle (1)", PALETTE[0]), ("sky (1)", PALETTE[1])])
    assert with_legend.shape[0] == 60 and with_legend.shape[1] > 80
    assert np.array_equal(with_legend[:, :80], plain)
    strip = with_legend[:, 80:]
    for color in PALETTE[:2]:  # one swatch per row, in its colour
        assert (strip == color).all(axis=2).any()


def test_neighbouring_entities_get_different_colours():
    h, w = 40, 120
    masks = [_square(h, w, 0, 40, 20 * k, 20 * k + 20) for k in range(6)]
    colors = distinct_colors(masks)
    assert all(a != b for a, b in zip(colors, colors[1:]))
    assert set(colors) <= set(PALETTE)
    picture = draw_entities(np.zeros((h, w, 3), np.uint8), masks)
    assert picture.shape == (h, w, 3)
