"""RefCOCO / RefCOCO+ / RefCOCOg reader: a ``refs`` file (the official ``refs(unc).p`` pickle, or the
same list as JSON) plus the COCO ``instances.json`` whose annotations the refs point to.

The pickle is read with an unpickler that builds plain data only (never a bare ``pickle.load``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Dataset, EntityMasks
from esgkit.core.errors import InputError
from esgkit.core.io import load_image, read_json

from .common import find_file, index_images, read_plain_pickle, resolve_root, segmentation_to_mask
from esgkit.core.fields import BOX, ID, INT, LIST, SEGMENTATION, TEXT, check_fields, check_list, shape


REF = {"ref_id": INT, "ann_id": INT, "image_id": ID, "sentences": LIST}
REF_OPTIONAL = {"split": TEXT, "category_id": INT}
SENTENCE = {"sent_id": INT}
INSTANCE = {"id": INT, "image_id": ID, "bbox": BOX, "segmentation": SEGMENTATION}


def read_refs(path: str | Path) -> list[dict[str, Any]]:
    """The list of refs from a ``.p`` pickle (restricted to plain data) or a ``.json`` file, each ref
    and sentence checked (``REF``, ``SENTENCE``)."""
    path = Path(path)
    data = read_json(path, "refs file") if path.suffix.lower() == ".json" else read_plain_pickle(path, "refs file")
    check_list(data, f"refs file {path}", "ref objects {ref_id, ann_id, image_id, sentences}")
    for k, r in enumerate(data):
        where = f"refs file {path}: ref {k}"
        check_fields(r, where, REF, REF_OPTIONAL)
        for j, sentence in enumerate(r["sentences"]):
            check_fields(sentence, f"{where} (ref_id {r['ref_id']}) sentence {j}", SENTENCE)
    return data


class RefIndex:
    """Refs joined with their instances: one entry per sentence (the unit RES/REC are scored on)."""

    def __init__(self, refs_path: str | Path, instances_path: str | Path, split: str = "") -> None:
        self.refs_path = Path(refs_path)
        self.instances_path = Path(instances_path)
        refs = read_refs(self.refs_path)
        where = f"instances JSON {self.instances_path}"
        data = read_json(self.instances_path, "instances JSON")
        if not isinstance(data, dict) or "annotations" not in data:
            raise InputError(f"{where}: expected a COCO instances object with 'images' and 'annotations'; "
                             f"got {shape(data)}")
        self.anns: dict[int, dict[str, Any]] = {}
        for k, a in enumerate(check_list(data["annotations"], f"{where}: 'annotations'", "annotation objects")):
            self.anns[check_fields(a, f"{where}: annotation {k}", INSTANCE, {"category_id": INT})["id"]] = a
        self.images = index_images(data.get("images", []), where)
        self.refs = [r for r in refs if not split or r.get("split") == split]
        if split and not self.refs:
            splits = sorted({str(r.get("split")) for r in refs})
            raise InputError(f"refs file {self.refs_path}: no refs of split {split!r} (splits: {', '.join(splits)})")
        self.sentences: list[dict[str, Any]] = []
        self.by_sent: dict[int, dict[str, Any]] = {}
        for r in self.refs:
            ann_id, ann = r["ann_id"], self.anns.get(r["ann_id"])
            if ann is None:
                raise InputError(
                    f"refs file {self.refs_path}: ref {r['ref_id']} points to ann_id {ann_id}, which "
                    f"{self.instances_path} does not hold"
                )
            category = next((c for c in (r.get("category_id"), ann.get("category_id")) if c is not None), 0)
            for s in r["sentences"]:
                if s["sent_id"] in self.by_sent:
                    raise InputError(f"refs file {self.refs_path}: ref {r['ref_id']} repeats sent_id {s['sent_id']}; "
                                     "sent_ids must be unique")
                entry = {"ref_id": r["ref_id"], "sent_id": s["sent_id"], "sent": str(s.get("sent", s.get("raw", ""))),
                         "ann_id": ann_id, "image_id": str(r["image_id"]), "bbox": [float(v) for v in ann["bbox"]],
                         "category_id": category}
                self.sentences.append(entry)
                self.by_sent[s["sent_id"]] = entry
        self.anns_by_image: dict[str, list[dict[str, Any]]] = {}
        for a in self.anns.values():
            self.anns_by_image.setdefault(str(a["image_id"]), []).append(a)
        self.sentences_by_image: dict[str, list[dict[str, Any]]] = {}
        for s in self.sentences:
            self.sentences_by_image.setdefault(s["image_id"], []).append(s)

    def image_size(self, image_id: str) -> tuple[int, int]:
        info = self.images.get(str(image_id))
        if info is None:
            raise InputError(f"instances JSON {self.instances_path}: no image with id {image_id}")
        return info["height"], info["width"]

    def ann_mask(self, ann_id: int) -> np.ndarray:
        ann = self.anns[int(ann_id)]
        h, w = self.image_size(str(ann["image_id"]))
        return segmentation_to_mask(ann["segmentation"], h, w, f"instances JSON {self.instances_path} annotation {ann_id}")


class RefCocoDataset(Dataset):
    """RefCOCO-style referring expressions: one sample per image that has refs in the split.

    Sample keys: ``image_id`` (str), ``image``, ``masks`` (EntityMasks of the image's instance
    annotations, ids = COCO ann ids), ``refs`` (list, one per sentence, of {ref_id, sent_id, sent,
    ann_id, segment_id (= id in ``masks``), bbox [x, y, w, h], category_id}).
    Files: ``root/<refs_file>`` (``refs(unc).p``, or a ``.json`` list) and ``root/instances.json``;
    images in ``image_dir`` (default ``root/images``)."""

    @dataclass
    class Config:
        root: str = ""
        split: str = "val"  # the refs' "split" field; "" = every ref
        refs_file: str = "refs(unc).p"
        instances_json: str = ""  # default: root/instances.json
        image_dir: str = ""  # default: root/images

    name = "refcoco"

    def __init__(self, config: RefCocoDataset.Config) -> None:
        self.config = config

    def _path(self, name: str, explicit: str, what: str) -> Path:
        if explicit:
            return find_file([Path(explicit)], what)
        return find_file([resolve_root(self.config.root, self.name) / name], what)

    @cached_property
    def index(self) -> RefIndex:
        refs = Path(self.config.refs_file)
        refs_path = refs if refs.is_absolute() else self._path(self.config.refs_file, "", "refs file")
        return RefIndex(refs_path, self._path("instances.json", self.config.instances_json, "instances JSON"),
                        self.config.split)

    @cached_property
    def image_ids(self) -> list[str]:
        return list(self.index.sentences_by_image)

    @cached_property
    def image_dir(self) -> Path:
        return self._path("images", self.config.image_dir, "image folder")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        info = self.index.images.get(image_id, {})
        image = load_image(self.image_dir / info.get("file_name", f"{image_id}.jpg"))
        anns = self.index.anns_by_image.get(image_id, [])
        if anns:
            masks = EntityMasks(np.stack([self.index.ann_mask(int(a["id"])) for a in anns]),
                                ids=np.array([int(a["id"]) for a in anns], np.int64))
        else:
            masks = EntityMasks.empty(image.shape[0], image.shape[1])
        masks.check_image_size(image.shape[0], image.shape[1], f"instance masks of image {image_id}")
        refs = [{**s, "segment_id": s["ann_id"]} for s in self.index.sentences_by_image[image_id]]
        return {"image_id": image_id, "image": image, "masks": masks, "refs": refs}
