"""Noun phrases in and out of the language decoder's answers.

An answer lists the caption's nouns, each followed by ``<SEG>`` (paper Table III):
``"red circle <SEG>, two squares <SEG>, sky <SEG>"``. ``format_answer`` writes that for training;
``clean_phrase`` turns the text generated before one ``<SEG>`` back into a phrase; ``find_spans``
locates phrases in the caption.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from esgkit.core.types import NounPhrase

from .tokenizer import SEG_TOKEN

_IRREGULAR_PLURALS = frozenset(
    "people men women children mice geese feet teeth sheep fish deer cattle police clothes glasses scissors".split()
)
_SINGULAR_S_ENDINGS = ("ss", "us", "is", "ous")
_PLURAL_QUANTIFIERS = frozenset(
    "two three four five six seven eight nine ten eleven twelve several many some both few these those multiple".split()
)
_STRIP = " \t\n,;.:!?\"'()[]{}…"


def is_plural(phrase: str) -> bool:
    """A simple, documented rule: plural when the head noun (the last word) is an irregular plural
    (people, children, mice, …) or ends in "s" but not in "ss"/"us"/"is"/"ous" (glass, bus, iris,
    …), or when the phrase starts with a number word or quantifier above one (two, several, …)."""
    words = re.findall(r"[a-zA-Z]+", phrase.lower())
    if not words:
        return False
    head = words[-1]
    if head in _IRREGULAR_PLURALS or words[0] in _PLURAL_QUANTIFIERS:
        return True
    return len(head) > 3 and head.endswith("s") and not head.endswith(_SINGULAR_S_ENDINGS)


def format_answer(phrases: Sequence[str]) -> str:
    """The answer the decoder learns: every phrase followed by `` <SEG>``, comma separated."""
    return ", ".join(f"{p.strip()} {SEG_TOKEN}" for p in phrases)


def clean_phrase(chunk: str) -> str:
    """The noun phrase in the text generated between two ``<SEG>`` (or before the first): the part
    after the last separator (",", ";", ":" or "including", so a lead-in like "There are 3 nouns,
    including" goes), without a leading "and"/"or" or surrounding punctuation."""
    text = re.split(r"[,;:]|\bincluding\b", chunk.replace(SEG_TOKEN, " "), flags=re.IGNORECASE)[-1]
    text = re.sub(r"^(?:and|or)\s+", "", text.strip(_STRIP), flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip(_STRIP)


def _pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def find_spans(caption: str, phrases: Sequence[str]) -> list[NounPhrase | None]:
    """Each phrase's span in ``caption`` as a NounPhrase (its text cut from the caption), or None
    when the caption does not contain it (whole words, case-insensitive, any whitespace).

    Phrases are matched in order: each search starts after the previous match, so a noun the
    caption repeats ("a circle … and a circle") maps to successive occurrences; a phrase found only
    earlier falls back to its first unused occurrence."""
    out: list[NounPhrase | None] = []
    used: set[tuple[int, int]] = set()
    cursor = 0
    for phrase in phrases:
        match = None
        if phrase.strip():
            pattern = _pattern(phrase)
            candidates = [m for m in pattern.finditer(caption) if (m.start(), m.end()) not in used]
            after = [m for m in candidates if m.start() >= cursor]
            match = (after or candidates or [None])[0]
        if match is None:
            out.append(None)
            continue
        used.add((match.start(), match.end()))
        cursor = match.end()
        text = caption[match.start() : match.end()]
        out.append(NounPhrase(text, match.start(), match.end(), is_plural(text)))
    return out


class CopyConstraint:
    """Copy-constrained decoding for the caption tasks (noun extraction, referring expressions): the
    answer may only list spans of the caption, in caption order, each followed by `` <SEG>`` and
    separated by ``,`` — the answer format of ``format_answer``. ``allows(text)`` says whether the
    decoded answer so far can still be completed into such an answer; the decoder takes its
    highest-scoring token that keeps it so. Checked on text, so it works with any tokenizer."""

    def __init__(self, caption: str) -> None:
        self.caption = caption

    def _find(self, phrase: str, cursor: int, prefix: bool) -> int | None:
        """End of the first whole-word occurrence of ``phrase`` (a word-start prefix of one, when
        ``prefix``) at or after ``cursor``; None when there is none."""
        body = re.escape(phrase)
        pattern = re.compile(r"(?<!\w)" + body + ("" if prefix else r"(?!\w)"))
        match = pattern.search(self.caption, cursor)
        return match.end() if match else None

    def _completed(self, text: str) -> tuple[int, str] | None:
        """(cursor after the completed phrases, the unfinished tail) or None when a completed phrase
        is not a caption span after its predecessor."""
        *done, tail = text.split(SEG_TOKEN)
        cursor = 0
        for k, part in enumerate(done):
            if k and not part.startswith(","):
                return None
            phrase = part[1:].strip() if k else part.strip()
            end = self._find(phrase, cursor, prefix=False) if phrase else None
            if end is None:
                return None
            cursor = end
        if done:
            if tail and not tail.startswith(","):
                return None
            tail = tail[1:]
        return cursor, tail

    def allows(self, text: str) -> bool:
        state = self._completed(text)
        if state is None:
            return False
        cursor, tail = state
        partial = tail.strip()
        return not partial or self._find(partial, cursor, prefix=True) is not None

    def can_end(self, text: str) -> bool:
        """True when the answer so far is complete: no unfinished phrase after the last <SEG>."""
        return not text.split(SEG_TOKEN)[-1].strip() and self._completed(text) is not None


__all__ = ["CopyConstraint", "clean_phrase", "find_spans", "format_answer", "is_plural"]
