"""Copy-constrained decoding (answers list caption spans only) and the ``hidden+phrase`` E_vl readout."""

from __future__ import annotations

import pytest
import torch

from esgkit.components.llms.phrases import CopyConstraint, format_answer
from esgkit.core.errors import ConfigError

from .conftest import CAPTION, NUM_TOKENS, VISION_DIM, tiny


def test_copy_constraint_accepts_only_ordered_caption_spans():
    c = CopyConstraint("There is a red circle. A blue square is left of the red circle.")
    assert c.allows("") and c.can_end("")
    assert c.allows(" a red") and not c.can_end(" a red")                    # unfinished phrase
    assert c.allows(" a red circle <SEG>") and c.can_end(" a red circle <SEG>")
    assert c.allows(" a red circle <SEG>, A blue sq")                         # word-start prefix of a span
    assert c.allows(" a red circle <SEG>, the red circle <SEG>")              # a later occurrence
    assert not c.allows(" a green")                                           # not in the caption
    assert not c.allows(" ed circle")                                         # not at a word start
    assert not c.allows(" a red circle <SEG> the")                            # separator missing
    assert not c.allows(" a red circle <SEG>, a red circle <SEG>")            # only one "a red circle"
    assert not c.allows(" the red circle <SEG>, A blue square <SEG>")         # out of caption order
    assert c.allows(" " + format_answer(["a red circle", "A blue square", "the red circle"]))


def test_unconstrained_decoding_can_leave_the_caption_constrained_cannot(z_v):
    """A random tiny LM generates words that are not in the caption; copy-constrained decoding of the
    same model only ever yields caption spans, each ended by <SEG>."""
    free = tiny(vision_dim=VISION_DIM, copy_constrained=False, max_new_tokens=24)
    text = free.tokenizer.decode(free.generate_ids(z_v, free.prompt_ids("nouns", CAPTION, NUM_TOKENS)))
    assert not CopyConstraint(CAPTION).allows(text)
    for seed in range(3):
        decoder = tiny(vision_dim=VISION_DIM, seed=seed)
        prompt = decoder.prompt_ids("nouns", CAPTION, NUM_TOKENS)
        answer = decoder.generate_ids(z_v, prompt, copy_from=CAPTION)
        text = decoder.tokenizer.decode(answer, skip_special_tokens=False)
        assert CopyConstraint(CAPTION).allows(text)
        out = decoder.extract(z_v, CAPTION)
        assert all(CAPTION[p.start : p.end] == p.text for p in out.phrases)
        assert out.seg_embeddings.shape[0] == len(out.phrases)


def test_taught_decoder_still_answers_its_phrases_when_constrained(taught, z_v):
    out = taught.extract(z_v, CAPTION)
    assert [p.text for p in out.phrases] == ["red circle", "two blue squares", "sky"]


def test_hidden_plus_phrase_readout_adds_the_mean_state_of_each_phrase(z_v):
    plain = tiny(vision_dim=VISION_DIM)
    pooled = tiny(vision_dim=VISION_DIM, seg_readout="hidden+phrase")
    pooled.load_state_dict(plain.state_dict())
    inputs = pooled.collate([pooled.build_inputs("grounding", CAPTION, ["red circle", "sky"], NUM_TOKENS)])
    a, b = plain(z_v, **inputs), pooled(z_v, **inputs)
    ids, hidden = inputs["input_ids"][0], a.hidden_states[0]
    seg = torch.nonzero(ids == pooled.seg_token_id).flatten().tolist()
    start = int(torch.nonzero(inputs["labels"][0] != -100)[0])
    expected = torch.stack([hidden[seg[0]] + hidden[start : seg[0]].mean(0),
                            hidden[seg[1]] + hidden[seg[0] + 1 : seg[1]].mean(0)])
    torch.testing.assert_close(b.seg_embeddings[0], expected)
    torch.testing.assert_close(a.seg_embeddings[0], hidden[seg])
    # inference reads the same embeddings (answer start known from the prompt length)
    answer = pooled.answer_ids("grounding", CAPTION, ["red circle", "sky"])
    prompt = pooled.prompt_ids("grounding", CAPTION, NUM_TOKENS)
    c = pooled(z_v, torch.tensor([prompt + answer]), answer_start=len(prompt))
    torch.testing.assert_close(c.seg_embeddings[0], expected)


def test_unknown_readout_is_a_config_error():
    with pytest.raises(ConfigError, match="seg_readout"):
        tiny(seg_readout="mean")
