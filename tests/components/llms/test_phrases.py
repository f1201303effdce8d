"""Noun phrases from generated answers: cleaning, spans in the caption, the plural rule."""

from __future__ import annotations

import pytest

from esgkit.components.llms.phrases import clean_phrase, find_spans, format_answer, is_plural


@pytest.mark.parametrize(
    "chunk, phrase",
    [
        (" red circle ", "red circle"),
        (", two squares ", "two squares"),
        (", and animals ", "animals"),
        ("There are twenty one semantic nouns, including petting zoo ", "petting zoo"),
        ("Nouns: sky ", "sky"),
        (", ", ""),
    ],
)
def test_clean_phrase(chunk, phrase):
    assert clean_phrase(chunk) == phrase


def test_format_answer_is_the_papers_list():
    assert format_answer(["petting zoo", "horns"]) == "petting zoo <SEG>, horns <SEG>"


def test_spans_follow_the_caption_in_order_and_skip_absent_nouns():
    caption = "A circle left of two Blue  squares and a circle under the sky."
    found = find_spans(caption, ["circle", "blue squares", "circle", "tree", "sky", "squ"])
    spans = [(p.start, p.end) if p else None for p in found]
    assert spans == [(2, 8), (21, 34), (41, 47), None, (58, 61), None]  # "squ" is not a whole word
    assert all(caption[p.start : p.end] == p.text for p in found if p)
    assert found[1].text == "Blue  squares" and found[1].plural


@pytest.mark.parametrize(
    "phrase, plural",
    [("circle", False), ("stars", True), ("grass", False), ("glass", False), ("bus", False), ("buses", True),
     ("people", True), ("two circle", True), ("several red ring", True), ("the sky", False), ("iris", False)],
)
def test_plural_rule(phrase, plural):
    assert is_plural(phrase) is plural
