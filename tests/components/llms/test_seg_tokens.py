"""<SEG> is one token, found wherever it is in the real sequence, any number of times per answer."""

from __future__ import annotations

import json

import pytest
import torch

from esgkit.components.llms import tokenizer as tk
from esgkit.core.errors import CompatibilityError, InputError

CAPTION = "A red circle is left of two blue squares under the sky."
PHRASES = ("red circle", "two blue squares", "sky")
VISION_DIM, NUM_TOKENS = 32, 9  # as in conftest.py


def tiny(**overrides):
    from esgkit.components.llms.llava import LlavaLlamaDecoder

    return LlavaLlamaDecoder(LlavaLlamaDecoder.Config(**overrides))


def test_seg_encodes_to_one_id_in_every_context():
    tok = tk.load_tiny_tokenizer()
    seg = tok.convert_tokens_to_ids(tk.SEG_TOKEN)
    assert tok.encode(tk.SEG_TOKEN, add_special_tokens=False) == [seg]
    for text in ("circle<SEG>", "circle <SEG>", "red circle <SEG>, sky <SEG>"):
        ids = tok.encode(text, add_special_tokens=False)
        assert ids.count(seg) == text.count(tk.SEG_TOKEN)
    assert tk.check_single_token(tok) == seg


def test_a_tokenizer_that_splits_seg_is_caught():
    from transformers import PreTrainedTokenizerFast

    raw = PreTrainedTokenizerFast(tokenizer_object=tk.build_tiny_tokenizer_file(), eos_token="</s>")
    assert len(raw.encode(tk.SEG_TOKEN, add_special_tokens=False)) > 1  # the BPE alone splits it
    with pytest.raises(CompatibilityError, match="splits '<SEG>'"):
        tk.check_single_token(raw)
    image_id, seg_id = tk.add_gella_tokens(raw)  # the fix the message suggests
    assert raw.encode("circle <SEG>", add_special_tokens=False)[-1] == seg_id != image_id


def test_tiny_vocabulary_covers_shapesworld_words():
    tok = tk.load_tiny_tokenizer()
    words = (
        "circle circles square squares triangle triangles star stars ring rings sky grass water sand wall "
        "walls fence fences red green blue yellow orange purple pink white black gray left right above below"
    ).split()
    split = [w for w in words if len(tok.encode(" " + w, add_special_tokens=False)) != 1]
    assert not split, f"split into several tokens: {split}"
    assert tok.decode(tok.encode(CAPTION, add_special_tokens=False)) == CAPTION


def test_shipped_tokenizer_is_the_builders_output():
    shipped = json.loads((tk.TINY_TOKENIZER_DIR / "tokenizer.json").read_text())["model"]
    built = json.loads(tk.build_tiny_tokenizer_file().to_str())["model"]
    assert shipped["vocab"] == built["vocab"] and shipped["merges"] == built["merges"]


@pytest.mark.parametrize("num_tokens", [1, NUM_TOKENS, 23])
def test_embeddings_at_every_seg_for_any_image_length_and_count(num_tokens):
    decoder = tiny(vision_dim=VISION_DIM)
    answers = [PHRASES[:1], PHRASES, PHRASES + ("blue squares", "circle")]
    samples = [decoder.build_inputs("grounding", CAPTION, a, num_tokens) for a in answers]
    batch = decoder.collate(samples)
    out = decoder(torch.randn(3, num_tokens, VISION_DIM), **batch)
    assert [e.shape for e in out.seg_embeddings] == [(n, decoder.embed_dim) for n in (1, 3, 5)]
    for b, sample in enumerate(samples):
        at = [i for i, t in enumerate(sample["input_ids"]) if t == decoder.seg_token_id]
        assert torch.equal(out.seg_embeddings[b], out.hidden_states[b, at])
        # the prompt holds the image placeholder num_tokens times, no <SEG>, and is not in the loss
        first_answer = next(i for i, lab in enumerate(sample["labels"]) if lab != -100)
        assert sample["input_ids"][:first_answer].count(decoder.image_token_id) == num_tokens
        assert min(at) > first_answer


def test_three_segs_in_one_generated_answer_give_three_aligned_embeddings(taught, z_v):
    out = taught.extract(z_v, CAPTION)
    assert out.text.count("<SEG>") == 3
    assert [p.text for p in out.phrases] == list(PHRASES)
    assert [p.plural for p in out.phrases] == [False, True, False]
    assert all(CAPTION[p.start : p.end] == p.text for p in out.phrases)
    assert out.caption.text == CAPTION and out.caption.phrases == out.phrases
    assert out.seg_embeddings.shape == (3, taught.embed_dim)
    # the same rows as a teacher-forced pass over the target answer, in phrase order
    sample = taught.build_inputs("grounding", CAPTION, PHRASES, NUM_TOKENS)
    forced = taught(z_v, torch.tensor([sample["input_ids"]])).seg_embeddings[0]
    torch.testing.assert_close(out.seg_embeddings, forced)
    assert torch.cdist(forced, forced).fill_diagonal_(1).min() > 0  # three distinct embeddings


def _script(decoder, monkeypatch, *answers: str):
    """Make generation return the given answers in turn (ids exactly as the tokenizer makes them)."""
    queue = [decoder.tokenizer.encode(" " + a, add_special_tokens=False) for a in answers]
    monkeypatch.setattr(decoder, "generate_ids", lambda z_v, prompt, copy_from=None: queue.pop(0))
    return queue


def test_nouns_missing_from_the_caption_are_dropped_with_their_embedding(monkeypatch, z_v):
    decoder = tiny(vision_dim=VISION_DIM)
    answer = "red circle <SEG>, tree <SEG>, sky <SEG>"
    _script(decoder, monkeypatch, answer)
    out = decoder.extract(z_v, CAPTION)
    assert [p.text for p in out.phrases] == ["red circle", "sky"]
    prompt = decoder.prompt_ids("nouns", CAPTION, NUM_TOKENS)
    full = prompt + decoder.tokenizer.encode(" " + answer, add_special_tokens=False)
    every = decoder(z_v, torch.tensor([full])).seg_embeddings[0]
    torch.testing.assert_close(out.seg_embeddings, every[[0, 2]])


def test_without_a_caption_it_describes_the_image_first(monkeypatch, z_v):
    decoder = tiny(vision_dim=VISION_DIM)
    _script(decoder, monkeypatch, "Two yellow stars above the grass.", "yellow stars <SEG>, grass <SEG>")
    out = decoder.extract(z_v, None)
    assert out.caption.text == "Two yellow stars above the grass."
    assert [(p.text, p.start, p.plural) for p in out.phrases] == [("yellow stars", 4, True), ("grass", 27, False)]
    assert out.seg_embeddings.shape == (2, decoder.embed_dim)


def test_image_token_count_must_match_z_v():
    decoder = tiny(vision_dim=VISION_DIM)
    batch = decoder.collate([decoder.build_inputs("nouns", CAPTION, PHRASES, 4)])
    with pytest.raises(CompatibilityError, match="4"):
        decoder(torch.randn(1, 5, VISION_DIM), **batch)


def test_reserved_tokens_in_a_caption_are_refused(z_v):
    decoder = tiny(vision_dim=VISION_DIM)
    with pytest.raises(InputError, match="<SEG>"):
        decoder.extract(z_v, "a circle <SEG> here")
    with pytest.raises(InputError, match="</s>"):
        decoder.build_inputs("nouns", "a circle</s> and a star", ["circle"], NUM_TOKENS)
