import numpy as np

from esgkit.core import EntityMasks, get_registry


def grid_masks(n=12, size=48):
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        r, c = divmod(i, 4)
        masks[i, r * 12:(r + 1) * 12, c * 12:(c + 1) * 12] = True
    return EntityMasks(masks, scores=np.linspace(0.1, 1, n))


def test_random_colors_distinct_seeded_and_painted():
    reg = get_registry()
    em = grid_masks()
    a = reg.build("colorizer", {"name": "random", "seed": 3}).colorize(em)
    b = reg.build("colorizer", {"name": "random", "seed": 3}).colorize(em)
    c = reg.build("colorizer", {"name": "random", "seed": 4}).colorize(em)
    assert (a.image == b.image).all() and not (a.image == c.image).all()
    assert len({tuple(x) for x in a.colors}) == len(em)
    d = np.linalg.norm(a.colors[:, None].astype(float) - a.colors[None].astype(float), axis=-1)
    assert d[~np.eye(len(em), dtype=bool)].min() >= 24
    for i in range(len(em)):
        assert (a.image[em.masks[i]] == a.colors[i]).all()
    assert (a.image[~em.masks.any(0)] == 0).all()


def test_random_many_entities_stay_distinct():
    masks = np.zeros((300, 20, 20), bool)
    em = EntityMasks(masks)
    colors = get_registry().build("colorizer", {"name": "random"}).colors(300)
    assert len({tuple(c) for c in colors}) == 300 and len(em) == 300


def test_overlap_higher_score_wins():
    m = np.zeros((2, 8, 8), bool)
    m[0, :6, :6] = True
    m[1, 3:, 3:] = True
    cm = get_registry().build("colorizer", {"name": "random"}).colorize(EntityMasks(m, [0.2, 0.9]))
    assert (cm.image[4, 4] == cm.colors[1]).all()
    cm = get_registry().build("colorizer", {"name": "random"}).colorize(EntityMasks(m, [0.9, 0.2]))
    assert (cm.image[4, 4] == cm.colors[0]).all()


def test_location_colour_depends_on_centroid_only():
    loc = get_registry().build("colorizer", {"name": "location"})
    m = np.zeros((3, 64, 64), bool)
    m[0, 2:10, 2:10] = True      # top-left
    m[1, 50:60, 50:60] = True    # bottom-right
    m[2, 4:8, 4:8] = True        # top-left again, a different shape
    cm = loc.colorize(EntityMasks(m))
    assert not (cm.colors[0] == cm.colors[1]).all()
    assert np.abs(cm.colors[0].astype(int) - cm.colors[2].astype(int)).max() <= 12


def test_palette_prefix_does_not_depend_on_how_many_are_asked():
    reg = get_registry()
    few = reg.build("colorizer", {"name": "random", "seed": 11}).colors(5)
    many = reg.build("colorizer", {"name": "random", "seed": 11}).colors(250)
    assert (few == many[:5]).all() and len({tuple(c) for c in many}) == 250
