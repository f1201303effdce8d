import numpy as np
import pytest

from esgkit.core import Caption, Colormap, EntityMasks, Grounding, InputError, NounPhrase, PhraseGrounding


def two_masks():
    m = np.zeros((2, 6, 8), bool)
    m[0, :3, :4] = True
    m[1, 2:, 3:] = True
    return EntityMasks(m, scores=[0.9, 0.5], ids=[10, 20])


def test_entity_masks_validates_shapes_and_values():
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        EntityMasks(np.zeros((4, 4), bool))
    with pytest.raises(InputError, match="scores must have shape"):
        EntityMasks(np.zeros((2, 4, 4), bool), scores=[1.0])
    with pytest.raises(InputError, match="binary"):
        EntityMasks(np.full((1, 2, 2), 3))
    with pytest.raises(InputError, match="unique"):
        EntityMasks(np.zeros((2, 2, 2), bool), ids=[1, 1])
    em = EntityMasks(np.ones((3, 2, 5), np.uint8))
    assert em.masks.dtype == bool and em.image_size == (2, 5) and list(em.ids) == [0, 1, 2]


def test_id_map_round_trip_and_overlap_rule():
    em = two_masks()
    id_map = em.to_id_map()
    # overlap pixel (2, 3): entity 10 has the higher score and wins
    assert id_map[2, 3] == 10 and id_map[5, 7] == 20 and id_map[5, 0] == 0
    back = EntityMasks.from_id_map(id_map)
    assert list(back.ids) == [10, 20]
    assert (back.masks[0] == (id_map == 10)).all()


def test_check_image_size_names_both_sizes():
    with pytest.raises(InputError, match=r"8x6 .* 10x6"):
        two_masks().check_image_size(6, 10)


def test_caption_spans_must_match():
    text = "two red circles left of a star"
    Caption(text, (NounPhrase("red circles", 4, 15, True),))
    with pytest.raises(InputError, match="cuts"):
        Caption(text, (NounPhrase("red circles", 0, 11, True),))


def test_colormap_validates():
    with pytest.raises(InputError):
        Colormap(np.zeros((4, 4, 3), np.float32), np.zeros((1, 3)))
    Colormap(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 3)))


def test_grounding_json_round_trip(tmp_path):
    em = two_masks()
    text = "a square and two shapes"
    p1, p2 = NounPhrase("a square", 0, 8), NounPhrase("two shapes", 13, 23, True)
    g = Grounding(Caption(text, (p1, p2)), (PhraseGrounding(p1, [10], [0.8]), PhraseGrounding(p2, [10, 20], [0.7, 0.6])), em)
    g.save(tmp_path / "g.json")
    back = Grounding.load(tmp_path / "g.json")
    assert back.caption == g.caption and back.groundings == g.groundings
    assert (back.masks.masks == em.masks).all() and list(back.masks.ids) == [10, 20]
    assert (back.phrase_mask(1) == (em.masks[0] | em.masks[1])).all()
    with pytest.raises(InputError, match="unknown entity ids"):
        Grounding(g.caption, (PhraseGrounding(p1, [99], [0.1]),), em)


def test_grounding_load_errors_name_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        Grounding.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        Grounding.load(bad)
