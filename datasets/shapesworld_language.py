"""ShapesWorld language: a small grammar that describes a Scene.

* a **narrative** of several sentences whose noun phrases (singular and plural, with attributes,
  positions, spatial relations, stuff nouns) are each linked to the segments they name;
* **referring expressions** that each name exactly one thing — the generator checks uniqueness
  against every other thing before it keeps an expression — and, RefCOCO+-style, the same targets
  named without location words (``location_free``);
* a one-sentence **description**.

Every claim (positions, "left of", "on the grass", counts) is computed from the scene's geometry.
"""

from __future__ import annotations

import re

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .shapesworld_scene import SHAPES, Entity, Scene

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
PLURALS = {"cross": "crosses"}
STUFF_PHRASES = {"sky": "the sky", "wall": "a brick wall", "grass": "the grass", "water": "the water",
                 "sand": "the sand", "snow": "the snow"}
STUFF_SHORT = {"wall": "the wall"}
TEXTURE_WORDS = {"striped": "striped", "dotted": "dotted", "checkered": "checkered", "hollow": "hollow"}
SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}


@dataclass(frozen=True)
class Piece:
    """A run of caption text; noun phrases carry the segment ids they name."""

    text: str
    segment_ids: tuple[int, ...] = ()
    plural: bool = False


LOCATION_WORDS = frozenset({"left", "right", "leftmost", "rightmost", "top", "topmost", "upper", "lower", "lowest",
                            "above", "below"})
"""Words of absolute or relative location: RefCOCO+ expressions may not use them."""


def has_location(expression: str) -> bool:
    """Whether ``expression`` holds a location word."""
    return any(word in LOCATION_WORDS for word in re.findall(r"[a-z]+", expression.lower()))


RELATION = re.compile(r"\b(?:left of|right of|above|below|in the|on the(?! (?:left|right)\b))\b")
"""A relation to another entity or to stuff ("left of the blue square", "on the grass"); "on the
left" is a position in the frame, not a relation."""


def is_relational(expression: str) -> bool:
    """Whether ``expression`` singles its target out by a relation to something else."""
    return RELATION.search(expression.lower()) is not None


def _noun(category: str, plural: bool) -> str:
    return PLURALS.get(category, category + "s") if plural else category


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" else "a"


def _number(n: int) -> str:
    return NUMBERS.get(n, "several")


def _position(x: float, y: float, w: int, h: int) -> str:
    """Where a point lies in the frame, in words."""
    col = "left" if x < w / 3 else ("right" if x > 2 * w / 3 else "")
    row = "top" if y < h / 3 else ("bottom" if y > 2 * h / 3 else "")
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    return "in the middle"


def _words(e: Entity, attrs: Sequence[str]) -> str:
    """Adjectives (size, colour, texture, in that order) + noun, for the chosen attributes."""
    out = []
    if "size" in attrs and e.size:
        out.append(SIZE_WORDS[e.size])
    if "color" in attrs and e.color:
        out.append(e.color)
    if "texture" in attrs and e.texture in TEXTURE_WORDS:
        out.append(TEXTURE_WORDS[e.texture])
    out.append(e.category)
    return " ".join(out)


def _matches(e: Entity, ref: Entity, attrs: Sequence[str]) -> bool:
    """Does ``e`` fit the description of ``ref`` restricted to ``attrs`` (a texture or size that
    is not said matches anything)?"""
    if not e.isthing or e.category != ref.category:
        return False
    if "color" in attrs and e.color != ref.color:
        return False
    if "size" in attrs and e.size != ref.size:
        return False
    if "texture" in attrs and e.texture != ref.texture:
        return False
    return True


class Describer:
    """Builds the narrative, referring expressions and description of one scene."""

    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene = scene
        self.rng = rng
        self.h, self.w = scene.size
        self.things = [e for e in scene.entities if e.isthing]
        self.stuff = [e for e in scene.entities if not e.isthing]
        self.margin = 0.04 * min(self.h, self.w)
        kinds: dict[tuple[str, str], list[Entity]] = {}
        for e in self.things:
            kinds.setdefault(e.kind, []).append(e)
        self.kinds = list(kinds.values())

    # ------------------------------------------------------------------ narrative
    def _kind_phrase(self, members: list[Entity], article: bool = True) -> Piece:
        e = members[0]
        ids = tuple(m.id for m in members)
        if len(members) == 1:
            attrs = ["color"] if e.category in SHAPES or self.rng.random() < 0.7 else []
            if e.size and self.rng.random() < (0.6 if e.size != "medium" else 0.25):
                attrs.append("size")
            if e.texture in TEXTURE_WORDS and self.rng.random() < 0.85:
                attrs.append("texture")
            words = _words(e, attrs)
            return Piece(f"{_article(words)} {words}" if article else words, ids, False)
        attrs = ["color"]
        if len({m.texture for m in members}) == 1 and e.texture in TEXTURE_WORDS:
            attrs.append("texture")
        if len({m.size for m in members}) == 1 and e.size and self.rng.random() < 0.5:
            attrs.append("size")
        words = _words(e, attrs)
        words = words[: -len(e.category)] + _noun(e.category, True)
        return Piece(f"{_number(len(members))} {words}", ids, True)

    def _stuff_phrase(self, entity_id: int, short: bool = False) -> Piece:
        name = self.scene.entity(entity_id).category
        text = STUFF_SHORT.get(name, STUFF_PHRASES[name]) if short else STUFF_PHRASES[name]
        return Piece(text, (entity_id,), False)

    def _center(self, members: list[Entity]) -> tuple[float, float]:
        return (float(np.mean([m.centroid[0] for m in members])), float(np.mean([m.centroid[1] for m in members])))

    def _relation(self, a: list[Entity], b: list[Entity]) -> str | None:
        """A spatial relation between two groups that holds for their centres, if any is clear."""
        (ax, ay), (bx, by) = self._center(a), self._center(b)
        dx, dy = ax - bx, ay - by
        if max(abs(dx), abs(dy)) < 3 * self.margin:
            return "next to"
        if abs(dx) >= abs(dy):
            return "to the left of" if dx < 0 else "to the right of"
        return "above" if dy < 0 else "below"

    def narrative(self) -> list[Piece]:
        pieces: list[Piece] = []
        say = pieces.append
        top = [s for s in self.stuff if s.category in ("sky", "wall")]
        ground = sorted((s for s in self.stuff if s.category not in ("sky", "wall")), key=lambda s: s.centroid[0])
        if top or ground:
            say(Piece(str(self.rng.choice(["In this picture we can see ", "This image shows ", "We can see "]))))
            if top:
                say(self._stuff_phrase(top[0].id))
                if ground:
                    say(Piece(" above "))
            for k, g in enumerate(ground):
                if k:
                    say(Piece(" and " if k == len(ground) - 1 else ", "))
                say(self._stuff_phrase(g.id))
                if len(ground) > 1:
                    say(Piece(" " + _position(g.centroid[0], g.centroid[1], self.w, self.h)))
            say(Piece(". "))
        order = self.rng.permutation(len(self.kinds))
        previous: list[Entity] | None = None
        for idx in order:
            members = self.kinds[int(idx)]
            self._kind_sentence(members, previous, say)
            previous = members
        text_end = pieces[-1]
        if text_end.text.endswith(" ") and not text_end.segment_ids:
            pieces[-1] = Piece(text_end.text.rstrip())
        return pieces

    def _kind_sentence(self, members: list[Entity], previous: list[Entity] | None, say) -> None:  # type: ignore[no-untyped-def]
        e = members[0]
        plural = len(members) > 1
        verb = "are" if plural else "is"
        phrase = self._kind_phrase(members)
        cx, cy = self._center(members)
        spread = max(m.centroid[0] for m in members) - min(m.centroid[0] for m in members)
        where = "scattered around the picture" if plural and spread > 0.45 * self.w else _position(cx, cy, self.w, self.h)
        if e.category == "wire":
            say(Piece("There " + verb + " "))
            say(phrase)
            say(Piece(" hanging across the scene. "))
            return
        on = {m.on for m in members}
        choice = self.rng.random()
        if e.category == "fence" or (choice < 0.3 and len(on) == 1 and 0 not in on):
            if len(on) == 1 and 0 not in on:
                stuff_id = on.pop()
                say(Piece("In " if self.scene.entity(stuff_id).category == "sky" else "On "))
                say(self._stuff_phrase(stuff_id, short=True))
                say(Piece(" there " + verb + " "))
                say(phrase)
                say(Piece(". "))
                return
        if (previous is not None and choice < 0.65 and e.category in SHAPES
                and previous[0].category in SHAPES):
            rel = self._relation(members, previous)
            if rel:
                say(Piece(phrase.text[0].upper() + phrase.text[1:], phrase.segment_ids, phrase.plural))
                say(Piece(f" {verb} {rel} "))
                if len(previous) > 1:
                    prev = self._kind_phrase(previous)
                    say(Piece("the " + prev.text, prev.segment_ids, True))
                else:
                    say(Piece("the " + _words(previous[0], ["color"]), (previous[0].id,), False))
                say(Piece(". "))
                return
        say(Piece("There " + verb + " "))
        say(phrase)
        say(Piece(f" {where}. "))

    # ------------------------------------------------------------------ referring expressions
    def _unique(self, target: Entity, attrs: Sequence[str]) -> bool:
        return all(not _matches(e, target, attrs) for e in self.things if e.id != target.id)

    def expressions(self, target: Entity) -> list[str]:
        """Every expression this grammar can make that names ``target`` and nothing else."""
        out: list[str] = []
        attr_sets = [[], ["color"], ["size", "color"], ["color", "texture"], ["size", "color", "texture"]]
        for attrs in attr_sets:
            if ("size" in attrs and not target.size) or ("texture" in attrs and target.texture not in TEXTURE_WORDS):
                continue
            if self._unique(target, attrs):
                out.append("the " + _words(target, attrs))
        thin = target.category not in SHAPES
        for base in ([], ["color"]):
            rivals = [e for e in self.things if e.id != target.id and _matches(e, target, base)]
            if rivals:
                out += self._spatial(target, rivals, _words(target, base), thin)
        return out

    def _spatial(self, target: Entity, rivals: list[Entity], words: str, thin: bool) -> list[str]:
        """Expressions that single ``target`` out of ``rivals`` (things its ``words`` also fit) by
        position in the frame, the stuff it lies on, or a relation to a uniquely named shape."""
        out = []
        tx, ty = target.centroid
        m = self.margin
        if all(tx < r.centroid[0] - m for r in rivals):
            out.append(f"the leftmost {words}" if len(rivals) > 1 else f"the {words} on the left")
        if all(tx > r.centroid[0] + m for r in rivals):
            out.append(f"the rightmost {words}" if len(rivals) > 1 else f"the {words} on the right")
        if all(ty < r.centroid[1] - m for r in rivals):
            out.append(f"the topmost {words}" if len(rivals) > 1 else f"the upper {words}")
        if all(ty > r.centroid[1] + m for r in rivals):
            out.append(f"the lowest {words}" if len(rivals) > 1 else f"the lower {words}")
        if thin:
            return out  # a wire or fence is long: "on", "left of" are unclear for it
        if target.on and all(r.on != target.on for r in rivals):
            stuff = self.scene.entity(target.on).category
            out.append(f"the {words} {'in' if stuff == 'sky' else 'on'} the {stuff}")
        rival_ids = {r.id for r in rivals}
        for land in self.things:
            if (land.id == target.id or land.id in rival_ids or land.category not in SHAPES
                    or not self._unique(land, ["color"])):
                continue
            rel = self._clear_relation(target, land)
            if rel and all(not self._maybe(r, land, rel) for r in rivals):
                out.append(f"the {words} {rel} the {_words(land, ['color'])}")
        return out

    def _clear_relation(self, a: Entity, b: Entity) -> str | None:
        dx = a.centroid[0] - b.centroid[0]
        dy = a.centroid[1] - b.centroid[1]
        m = 2 * self.margin
        if abs(dx) > abs(dy) + m:
            return "left of" if dx < 0 else "right of"
        if abs(dy) > abs(dx) + m:
            return "above" if dy < 0 else "below"
        return None

    def _maybe(self, a: Entity, b: Entity, rel: str) -> bool:
        """Could ``rel`` be said of (a, b) by a reader at all (a generous test, so that a relational
        expression is kept only when every rival clearly fails it)?"""
        dx = a.centroid[0] - b.centroid[0]
        dy = a.centroid[1] - b.centroid[1]
        return {"left of": dx < 0, "right of": dx > 0, "above": dy < 0, "below": dy > 0}[rel]

    def location_free(self, target: Entity, limit: int = 2) -> list[str]:
        """Up to ``limit`` expressions for ``target`` without a location word (RefCOCO+'s rule): its
        attributes, or the stuff it lies on; none when only a position singles it out."""
        return [e for e in self.expressions(target) if not has_location(e)][:limit]

    def refs(self, max_refs: int = 4) -> list[tuple[Entity, list[str]]]:
        """Up to ``max_refs`` targets with one or two expressions each; things of repeated kinds
        (which need a position or relation to single out) are preferred."""
        options = [(t, self.expressions(t)) for t in self.things]
        options = [(t, ex) for t, ex in options if ex]
        if not options:
            return []
        weights = np.array([3.0 if sum(_matches(e, t, []) for e in self.things) > 1 else 1.0
                            for t, _ in options])
        n = min(max_refs, len(options))
        picked = self.rng.choice(len(options), n, replace=False, p=weights / weights.sum())
        out = []
        for i in sorted(int(k) for k in picked):
            target, exprs = options[i]
            k = min(len(exprs), int(self.rng.integers(1, 3)))
            chosen = [exprs[int(j)] for j in sorted(self.rng.choice(len(exprs), k, replace=False))]
            out.append((target, chosen))
        return out

    # ------------------------------------------------------------------ description
    def description(self) -> str:
        shapes = sum(1 for e in self.things if e.category in SHAPES)
        parts = []
        if shapes:
            parts.append(("one shape" if shapes == 1 else f"{_number(shapes)} shapes"))
        for thin in ("fence", "wire"):
            n = sum(1 for e in self.things if e.category == thin)
            if n:
                parts.append(f"a {thin}" if n == 1 else f"{_number(n)} {_noun(thin, True)}")
        things = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "nothing"
        ground = [s.category for s in self.stuff if s.category not in ("sky", "wall")]
        top = [s.category for s in self.stuff if s.category in ("sky", "wall")]
        text = things[0].upper() + things[1:]
        if ground:
            text += " on " + (", ".join(ground[:-1]) + " and " + ground[-1] if len(ground) > 1 else ground[0])
        if top:
            text += " under the sky" if top[0] == "sky" else " in front of a brick wall"
        return text + "."
