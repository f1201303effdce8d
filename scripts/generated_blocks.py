"""The generated parts of a page that a script writes (a model card, docs/ablations.md), shared by the
scripts that keep them: each part lies between

    <!-- generated: NAME (scripts/SCRIPT.py) -->
    ...
    <!-- end generated: NAME -->

``blocks`` reads the parts, ``rewrite`` replaces them, ``write_or_check`` writes the page or, with
``--check``, says which parts are stale (exit status 1) without writing anything."""

from __future__ import annotations

import re
import sys
from pathlib import Path


def pattern(script: str) -> re.Pattern[str]:
    """The markers of the parts ``scripts/<script>.py`` writes (groups: start, name, content, end)."""
    return re.compile(rf"(<!-- generated: ([\w.-]+) \(scripts/{re.escape(script)}\.py\) -->\n)(.*?)"
                      r"(<!-- end generated: \2 -->)", re.S)


def blocks(text: str, script: str) -> dict[str, str]:
    """Each part's name → its current content, in page order."""
    return {m.group(2): m.group(3) for m in pattern(script).finditer(text)}


def rewrite(text: str, script: str, renders: dict[str, str]) -> str:
    """The page with each part named in ``renders`` replaced (the others kept)."""
    return pattern(script).sub(lambda m: m.group(1) + renders.get(m.group(2), m.group(3)) + m.group(4), text)


def write_or_check(page: Path, script: str, renders: dict[str, str], check: bool, what: str = "generated parts") -> int:
    """``check``: exit status 1 and the stale parts' names on stderr when a part differs from its render,
    else 0; otherwise write the page with the parts replaced. Returns the exit status."""
    text = page.read_text()
    current = blocks(text, script)
    names = list(renders)
    if check:
        stale = [name for name in names if renders[name] != current[name]]
        if stale:
            print(f"{page}: stale {what} {stale}; run python scripts/{script}.py", file=sys.stderr)
            return 1
        print(f"{page}: {what} {names} are current")
        return 0
    page.write_text(rewrite(text, script, renders))
    return 0
