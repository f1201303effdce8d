"""Panoptic Narrative Grounding reader: the official narrative JSON (``png_coco_<split>.json``, a list
of {image_id, caption, segments: [{utterance, noun, segment_ids, plural}]}) over COCO-panoptic
segments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from esgkit.core import Caption, Grounding, NounPhrase, PhraseGrounding
from esgkit.core.types import encode_rle
from esgkit.core.errors import InputError
from esgkit.core.io import read_json

from .coco_panoptic import CocoPanopticDataset
from esgkit.core.fields import BOOL, ID, LIST, SEGMENT_IDS, TEXT, check_fields, check_list

NARRATIVE = {"image_id": ID, "caption": TEXT, "segments": LIST}
SEGMENT = {"utterance": TEXT, "segment_ids": SEGMENT_IDS, "noun": BOOL, "plural": BOOL}  # all optional


@dataclass(frozen=True)
class Narrative:
    """One parsed narrative. ``phrases`` are the grounded noun utterances (noun true and at least one
    segment id), in caption order; ``phrase_segments[k]`` are the segment ids of phrase k."""

    image_id: str
    caption: Caption
    phrase_segments: tuple[tuple[int, ...], ...]
    index: int  # position in the narrative JSON list


def _locate(text: str, utterance: str, cursor: int) -> tuple[int, int]:
    """(start, length) of ``utterance`` in ``text`` at or after ``cursor``: exact first, then
    ignoring case and runs of whitespace; (-1, 0) if absent."""
    if not utterance:
        return -1, 0
    start = text.find(utterance, cursor)
    if start >= 0:
        return start, len(utterance)
    pattern = r"\s+".join(re.escape(w) for w in utterance.split())
    m = re.compile(pattern, re.IGNORECASE).search(text, cursor)
    return (m.start(), m.end() - m.start()) if m else (-1, 0)


def parse_narrative(entry: Any, index: int, where: str) -> Narrative:
    """Turn one entry of the official JSON into a Caption whose phrases carry character spans.

    Utterances are located in the caption in order (the official utterances are consecutive pieces
    of the caption); an utterance that cannot be found is an error naming the entry."""
    where = f"{where}: entry {index}"
    check_fields(entry, where, NARRATIVE)
    where = f"{where} (image {entry['image_id']})"
    text = entry["caption"]
    phrases: list[NounPhrase] = []
    links: list[tuple[int, ...]] = []
    cursor = 0
    for j, seg in enumerate(entry["segments"]):
        check_fields(seg, f"{where} segment {j}", {}, SEGMENT)
        utterance = (seg.get("utterance") or "").strip()
        start, length = _locate(text, utterance, cursor)
        if start >= 0:
            cursor = start + length
        ids = tuple(int(i) for i in seg.get("segment_ids") or [])
        if not seg.get("noun", bool(ids)) or not ids:
            continue
        if start < 0:
            raise InputError(f"{where}: utterance {utterance!r} is not found in the caption; utterances are "
                             "consecutive pieces of the caption")
        phrases.append(NounPhrase(text[start : start + length], start, start + length,
                                  bool(seg.get("plural", len(ids) > 1))))
        links.append(ids)
    return Narrative(str(entry["image_id"]), Caption(text, tuple(phrases)), tuple(links), index)


def read_narratives(path: str | Path) -> list[Narrative]:
    """The narratives of a PNG-style JSON, each entry checked (``NARRATIVE``, ``SEGMENT``)."""
    data = check_list(read_json(path, "narrative JSON"), f"narrative JSON {path}",
                      "{image_id, caption, segments} objects")
    return [parse_narrative(e, i, f"narrative JSON {path}") for i, e in enumerate(data)]


class PNGDataset(CocoPanopticDataset):
    """Panoptic Narrative Grounding: one sample per narrative (caption grounded on panoptic segments).

    Sample keys: those of ``coco_panoptic`` plus ``caption`` (Caption; its phrases are the grounded
    noun phrases), ``phrase_segments`` (list[list[int]] segment ids per phrase, aligned with
    ``caption.phrases``), ``phrase_is_thing`` (list[bool], the official rule: category of the phrase's
    last segment), ``narrative_index`` (position in the JSON list).
    Files: ``root/annotations/png_coco_<split>.json`` plus the COCO-panoptic files."""

    @dataclass
    class Config(CocoPanopticDataset.Config):
        narratives_json: str = ""  # default: root/annotations/png_coco_<split>.json

    name = "png"

    @cached_property
    def narratives(self) -> list[Narrative]:
        split = self.config.split
        path = self._path(self.config.narratives_json,
                          [f"annotations/png_coco_{split}.json", f"png_coco_{split}.json"], "narrative JSON")
        return read_narratives(path)

    def __len__(self) -> int:
        return len(self.narratives)

    def __getitem__(self, index: int) -> dict[str, Any]:
        narrative = self.narratives[index]
        sample = self.panoptic_sample(narrative.image_id)
        sample.update(narrative_sample(narrative, sample["segments_info"], self.panoptic.json_path))
        return sample


def png_predictions(sample: dict[str, Any], grounding: Grounding) -> list[dict[str, Any]]:
    """Prediction-file entries (docs/formats.md) for one ``png``/``shapesworld`` sample from a
    ``Grounding`` whose phrases are the sample's ``caption.phrases`` in order (phrase k's mask = union
    of its entities). ``narrative_index`` (the narrative's place in the ground-truth file) is written
    when the sample gives it."""
    n = len(sample["caption"].phrases)
    if len(grounding.groundings) != n:
        raise InputError(f"image {sample['image_id']}: the grounding has {len(grounding.groundings)} phrases, "
                         f"the caption {n}; ground the sample's own phrases")
    where = {"narrative_index": sample["narrative_index"]} if "narrative_index" in sample else {}
    return [{"image_id": sample["image_id"], **where, "phrase_index": k,
             "segmentation": encode_rle(grounding.phrase_mask(k))} for k in range(n)]


def narrative_sample(narrative: Narrative, segments_info: list[dict[str, Any]], where: Path) -> dict[str, Any]:
    """The caption keys of a sample; checks every linked segment exists in the image."""
    isthing = {int(s["id"]): bool(s["isthing"]) for s in segments_info}
    for ids in narrative.phrase_segments:
        missing = [i for i in ids if i not in isthing]
        if missing:
            raise InputError(
                f"narrative {narrative.index} of image {narrative.image_id} links segment ids {missing} "
                f"that {where} does not list for that image"
            )
    return {
        "caption": narrative.caption,
        "phrase_segments": [list(ids) for ids in narrative.phrase_segments],
        "phrase_is_thing": [isthing[ids[-1]] for ids in narrative.phrase_segments],
        "narrative_index": narrative.index,
    }


def ground_truth_grounding(sample: dict[str, Any]) -> Grounding:
    """The sample's annotation as a ``Grounding`` (each phrase → its segments, score 1): what a
    perfect grounding pipeline would return for this caption and these masks."""
    caption, links, masks = sample["caption"], sample["phrase_segments"], sample["masks"]
    groundings = [PhraseGrounding(p, tuple(ids), tuple(1.0 for _ in ids)) for p, ids in zip(caption.phrases, links)]
    return Grounding(caption, tuple(groundings), masks)
