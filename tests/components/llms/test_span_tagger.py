"""Noun extraction by BIO tagging of the caption tokens (``noun_extraction: tag``)."""

from __future__ import annotations

import pytest
import torch

from esgkit.components.llms.span_tagger import BEGIN, INSIDE, OUTSIDE, bio_labels, decode_spans
from esgkit.core.errors import CheckpointError, ConfigError

from .conftest import CAPTION, NUM_TOKENS, PHRASES, VISION_DIM, tiny


def test_bio_labels_follow_the_phrase_characters():
    # "xx the sky above" with the caption starting at character 3; tokens carry their leading space.
    offsets = [(0, 2), (3, 6), (6, 10), (10, 16), (0, 0)]
    assert bio_labels(offsets, (3, 16), [(0, 7)]) == [-100, BEGIN, INSIDE, OUTSIDE, -100]
    # two adjacent phrases: the second one begins again
    assert bio_labels(offsets, (3, 16), [(0, 3), (4, 13)]) == [-100, BEGIN, BEGIN, INSIDE, -100]


@pytest.mark.parametrize("tags, spans", [
    ([OUTSIDE, BEGIN, INSIDE, OUTSIDE, BEGIN], [(1, 3), (4, 5)]),
    ([BEGIN, BEGIN, INSIDE], [(0, 1), (1, 3)]),
    ([INSIDE, INSIDE, OUTSIDE], [(0, 2)]),          # an I after O starts a span
    ([-100, BEGIN, INSIDE, -100], [(1, 3)]),         # leaving the caption ends the span
    ([OUTSIDE, OUTSIDE], []),
])
def test_decode_spans(tags, spans):
    assert decode_spans(tags) == spans


def test_build_inputs_tags_the_caption_tokens_only():
    decoder = tiny(vision_dim=VISION_DIM, noun_extraction="tag")
    sample = decoder.build_inputs("grounding", CAPTION, PHRASES, NUM_TOKENS)
    tok = decoder.tokenizer
    tagged = [(tok.decode([i]).strip(), t) for i, t in zip(sample["input_ids"], sample["tag_labels"]) if t != -100]
    assert "".join(w for w, _ in tagged).replace(" ", "") == CAPTION.replace(" ", "")
    words = [(w, t) for w, t in tagged if w]
    assert words[:4] == [("A", OUTSIDE), ("red", BEGIN), ("circle", INSIDE), ("is", OUTSIDE)]
    assert [w for w, t in words if t == BEGIN] == ["red", "two", "sky"]
    # the answer part is never tagged, and the description task has no tags at all
    answer_from = next(i for i, t in enumerate(sample["labels"]) if t != -100)
    assert all(t == -100 for t in sample["tag_labels"][answer_from:])
    assert "tag_labels" not in decoder.build_inputs("description", CAPTION, (), NUM_TOKENS)


def test_trained_tagger_extracts_the_phrases_and_their_seg_embeddings(z_v):
    """Trained on the tag loss of one caption, extraction returns exactly its phrases (no
    generation), with one E_vl per phrase read at the <SEG> of the teacher-forced answer."""
    torch.manual_seed(0)
    decoder = tiny(vision_dim=VISION_DIM, noun_extraction="tag")
    batch = decoder.collate([decoder.build_inputs("grounding", CAPTION, PHRASES, NUM_TOKENS)])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        out = decoder(z_v, **batch)
        first = first if first is not None else float(out.tag_loss.detach())
        optimizer.zero_grad()
        out.tag_loss.backward()
        optimizer.step()
    assert float(out.tag_loss) < 0.05 < first
    decoder.eval()
    result = decoder.extract(z_v, CAPTION)
    assert [p.text for p in result.phrases] == list(PHRASES)
    assert [CAPTION[p.start : p.end] for p in result.phrases] == list(PHRASES)
    assert [p.plural for p in result.phrases] == [False, True, False]
    assert result.seg_embeddings.shape == (3, decoder.embed_dim)
    ids = torch.tensor([decoder.prompt_ids("nouns", CAPTION, NUM_TOKENS)
                        + decoder.answer_ids("nouns", CAPTION, PHRASES)[:-1]])
    expected = decoder(z_v, ids, answer_start=len(ids[0]) - len(decoder.answer_ids("nouns", CAPTION, PHRASES)) + 1)
    torch.testing.assert_close(result.seg_embeddings, expected.seg_embeddings[0])


def test_tag_loss_is_zero_but_in_the_graph_without_caption_tasks(z_v):
    decoder = tiny(vision_dim=VISION_DIM, noun_extraction="tag")
    batch = decoder.collate([decoder.build_inputs("description", CAPTION, (), NUM_TOKENS)])
    out = decoder(z_v, **batch)
    assert float(out.tag_loss) == 0.0
    out.tag_loss.backward()
    assert all(p.grad is not None for p in decoder.span_tagger.parameters())


def test_hf_directory_keeps_the_tagger(tmp_path, z_v):
    decoder = tiny(vision_dim=VISION_DIM, noun_extraction="tag", seed=5)
    decoder.save_pretrained(tmp_path / "lm")
    again = type(decoder).from_pretrained(tmp_path / "lm", noun_extraction="tag", vision_dim=VISION_DIM)
    for k, v in decoder.span_tagger.state_dict().items():
        assert torch.equal(v, again.span_tagger.state_dict()[k])
    other = tiny(vision_dim=VISION_DIM, noun_extraction="tag", hidden_size=32)
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "span_tagger.safetensors").replace(tmp_path / "lm" / "span_tagger.safetensors")
    with pytest.raises(CheckpointError, match="span tagger"):
        type(decoder).from_pretrained(tmp_path / "lm", noun_extraction="tag", vision_dim=VISION_DIM)


def test_unknown_noun_extraction_is_refused():
    with pytest.raises(ConfigError, match="noun_extraction"):
        tiny(noun_extraction="regex")
