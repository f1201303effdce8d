"""Text in and out. In: captions given on the command line or to ``Pipeline.run``, checked once
where they enter, so the parts behind them (tokenizer, noun extraction, the JSON written) never see
an empty string or a control character. Out: the small aligned tables the commands print
(``text_table``)."""

from __future__ import annotations

import unicodedata

from collections.abc import Collection, Sequence

from .errors import InputError

EXAMPLE_CAPTION = "a red circle next to two squares"
"""The sentence error messages suggest."""

_SPACES = {"\t", "\n", "\r", "\v", "\f", "\x85", "\u2028", "\u2029"}
"""Line breaks and tabs: ordinary whitespace in a pasted caption, normalised to one space each."""


def check_caption(text: object, what: str = "--caption", noun: str = "caption",
                  empty_hint: str = "") -> str:
    """The caption ``text`` ready to ground: tabs and line breaks become spaces and the ends are
    stripped. InputError (naming ``what``) when it is not text, is empty or only whitespace, or holds
    a control character (named with its position: an escape code or a NUL pasted by accident)."""
    if not isinstance(text, str):
        raise InputError(f"{what}: a {noun} must be text, not {type(text).__name__}")
    for position, char in enumerate(text):
        if char in _SPACES:
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs"):
            kind = "control character" if category == "Cc" else "lone surrogate (not valid Unicode text)"
            raise InputError(f"{what}: the {noun} holds a {kind} U+{ord(char):04X} ({char!r}) at position "
                             f"{position}; remove it (tabs and line breaks are fine)")
    caption = "".join(" " if char in _SPACES else char for char in text).strip()
    if not caption:
        hint = empty_hint or (f"give a sentence such as {EXAMPLE_CAPTION!r}, or leave {what} out to let the model "
                              "describe the image")
        raise InputError(f"{what}: the {noun} is empty; {hint}")
    return caption


def check_expression(text: object, what: str = "--expression") -> str:
    """A referring expression, checked like a caption (``check_caption``); it cannot be left out."""
    return check_caption(text, what, "referring expression", f"give one such as {EXAMPLE_EXPRESSION!r}")


EXAMPLE_EXPRESSION = "the leftmost red square"


def text_table(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """``rows`` (the first is the header) as columns two spaces apart with a rule under the header;
    the columns numbered in ``right`` (numbers) are right-aligned."""
    width = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(width[k]) if k in right else c.ljust(width[k]) for k, c in enumerate(r)).rstrip()
             for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


__all__ = ["EXAMPLE_CAPTION", "EXAMPLE_EXPRESSION", "check_caption", "check_expression", "text_table"]
