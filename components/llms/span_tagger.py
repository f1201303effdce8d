"""Noun extraction by tagging the caption's tokens (``language_decoder.noun_extraction: tag``).

A 7B LLM copies the caption's noun phrases into its answer by itself; a 2-layer LM trained from
scratch in 30 CPU minutes does not learn to copy ~17 phrases of a 150-token narrative in order (it
lists the first few, then repeats frequent ones). The tagger reads the phrases off the LM's own
states of the caption instead: a small head labels every caption token O (outside), B (begins a
phrase) or I (inside one) — BIO tagging, as span extraction is usually done. The LM is causal, so
a token's state has not seen what follows it; the head reads the state of the token *and* of the
next one ("the" before "sky" begins a phrase, "the" before "bottom left" does not).

The tagged spans then become the answer "phrase <SEG>, phrase <SEG>, …" that the LM reads
teacher-forced, so E_vl is still read at the ``<SEG>`` tokens of the actual answer sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

OUTSIDE, BEGIN, INSIDE = 0, 1, 2
IGNORE_INDEX = -100


class SpanTagger(nn.Module):
    """BIO logits (B, T, 3) from last-layer LM states (B, T, D): an MLP over [h_t, h_{t+1}]."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, 3))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        following = torch.cat([hidden[:, 1:], hidden.new_zeros(hidden.shape[0], 1, hidden.shape[2])], dim=1)
        return self.mlp(torch.cat([hidden, following], dim=-1))


def bio_labels(offsets: Sequence[tuple[int, int]], caption_span: tuple[int, int],
               phrase_spans: Sequence[tuple[int, int]]) -> list[int]:
    """Per-token BIO targets: IGNORE outside the caption, else O/B/I by the phrases' character spans.

    ``offsets`` are the tokens' (start, end) characters in the prompt text, ``caption_span`` where
    the caption sits in it and ``phrase_spans`` the phrases' spans in the caption. A token belongs
    to a phrase when their characters overlap (a BPE token may carry the space before a word)."""
    c0, c1 = caption_span
    labels = []
    previous = None
    for a, b in offsets:
        if b <= c0 or a >= c1 or a == b:
            labels.append(IGNORE_INDEX)
            previous = None
            continue
        owner = next((k for k, (s, e) in enumerate(phrase_spans) if max(a, c0 + s) < min(b, c0 + e)), None)
        if owner is None:
            labels.append(OUTSIDE)
        else:
            labels.append(INSIDE if owner == previous else BEGIN)
        previous = owner
    return labels


def decode_spans(tags: Sequence[int]) -> list[tuple[int, int]]:
    """Token spans [start, end) from predicted tags: B starts a span, I continues it (an I after O
    starts one too), O or a tag outside the caption (IGNORE) ends it."""
    spans: list[tuple[int, int]] = []
    start = None
    for t, tag in enumerate(list(tags) + [OUTSIDE]):
        if tag == BEGIN or (tag == INSIDE and start is None):
            if start is not None:
                spans.append((start, t))
            start = t
        elif tag != INSIDE and start is not None:
            spans.append((start, t))
            start = None
    return spans


__all__ = ["BEGIN", "IGNORE_INDEX", "INSIDE", "OUTSIDE", "SpanTagger", "bio_labels", "decode_spans"]
