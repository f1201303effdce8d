"""GELLA's pictures and table: one colour and one legend row per phrase text, ``overlay(only=…)``
painting just those phrases' entities, ``legend=False`` keeping the image's size, and the summary
``esgkit run`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from esgkit.core import Caption, EntityMasks, Grounding, InputError, NounPhrase, PhraseGrounding
from esgkit.core.io import load_image
from esgkit.layers.painting import PALETTE, dilate, erode
from esgkit.pipelines.gella import pipeline as gella
from esgkit.pipelines.gella.pipeline import GellaPipeline, format_table, phrase_colors

TEXT = "a circle, two squares, the circle and the sky"


@pytest.fixture(scope="module")
def painter() -> GellaPipeline:
    """The pictures need no model: a GELLA pipeline holding only its config."""
    p = GellaPipeline.__new__(GellaPipeline)
    p.config = GellaPipeline.Config()
    return p


@pytest.fixture(scope="module")
def grounded():
    """120×200 grey image: a disc (id 3), two 40×60 squares (11, 12) and the sky (7). "circle" is said
    twice (on 3, then on 12 which "squares" holds with a higher score); "sky" is grounded on nothing."""
    ids = np.zeros((120, 200), np.int64)
    ids[:30] = 7
    yy, xx = np.mgrid[:120, :200]
    ids[(yy - 75) ** 2 + (xx - 35) ** 2 < 28 ** 2] = 3
    ids[50:90, 70:130] = 11
    ids[50:90, 135:195] = 12
    masks = EntityMasks.from_id_map(ids)
    spans = [(TEXT.index(w, s), w) for w, s in (("circle", 0), ("squares", 0), ("circle", 20), ("sky", 0))]
    phrases = [NounPhrase(w, i, i + len(w), plural=w == "squares") for i, w in spans]
    groundings = (PhraseGrounding(phrases[0], [3], [0.9]), PhraseGrounding(phrases[1], [11, 12], [0.8, 0.95]),
                  PhraseGrounding(phrases[2], [12], [0.6]), PhraseGrounding(phrases[3], [], []))
    image = np.full((120, 200, 3), 128, np.uint8)
    return image, Grounding(Caption(TEXT, tuple(phrases)), groundings, masks)


def _mask(result: Grounding, *ids: int) -> np.ndarray:
    pos = [result.masks.ids.tolist().index(i) for i in ids]
    return result.masks.masks[pos].any(0)


def test_a_repeated_phrase_gets_one_colour_and_one_legend_row(painter, grounded, monkeypatch):
    image, result = grounded
    colors = phrase_colors(result)
    assert colors[0] == colors[2] and len(set(colors)) == 3 and set(colors) <= set(PALETTE)
    calls = []
    real = gella.draw_overlay
    monkeypatch.setattr(gella, "draw_overlay", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    picture = painter.overlay(result, image)
    (args, _), = calls
    legend = args[4]
    assert legend == [("circle (2)", colors[0]), ("squares (2)", colors[1]), ("sky (0)", colors[3])]
    assert sorted(args[3]) == ["circle", "squares", "squares / circle"]  # one label per entity, each phrase once
    assert picture.shape[0] == 120 and picture.shape[1] > 200  # the legend strip on the right


def test_without_legend_the_overlay_has_the_images_size(painter, grounded):
    image, result = grounded
    assert painter.overlay(result, image, legend=False).shape == image.shape
    assert painter.overlay(result, image, only=[], legend=True).shape == image.shape  # nothing to list


@pytest.mark.parametrize("k, ids", [(0, (3,)), (1, (11, 12)), (2, (12,))])
def test_only_paints_that_phrases_entities(painter, grounded, k, ids):
    image, result = grounded
    picture = painter.overlay(result, image, only=[k], legend=False)
    changed = (picture != image).any(2)
    mask = _mask(result, *ids)
    assert changed[erode(mask)].all()  # every pixel of its entities (fill, outline, label) …
    assert not changed[~dilate(mask)].any()  # … and nothing beyond them and their 1-px halo
    colour = phrase_colors(result)[k]
    edge = mask & ~erode(mask, 2)
    assert ((picture[edge] == colour).all(1).mean()) > 0.9  # the outline in the phrase's colour
    with pytest.raises(InputError, match="phrase 4: this grounding has 4 phrases"):
        painter.overlay(result, image, only=[4])


def test_write_saves_the_overlay_and_the_summary_is_the_table(painter, grounded, tmp_path):
    image, result = grounded
    paths = painter.write(result, str(tmp_path), image)
    assert np.array_equal(load_image(Path(paths[1])), painter.overlay(result, image))
    table = painter.summary(result)
    assert table == format_table(result)
    lines = table.splitlines()
    assert lines[0].split() == ["noun", "entities", "score"] and set(lines[1]) == {"-"}
    assert lines[3].split() == ["squares", "11,", "12", "0.95"] and lines[5].split() == ["sky", "-", "-"]
    empty = Grounding(Caption("hello"), (), result.masks)
    assert painter.summary(empty) == ""  # run has warned: no noun phrase
