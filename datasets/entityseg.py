"""EntitySeg-style reader: a COCO instances JSON (images, annotations with RLE or polygon masks,
categories) read class-agnostically — every annotation, thing or stuff, is an entity."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Dataset, EntityMasks
from esgkit.core.errors import InputError
from esgkit.core.io import load_image, read_json
from esgkit.core.limits import check_entities

from .common import dataset_file, index_images, segmentation_to_mask, write_json
from esgkit.core.fields import BOOL, ID, INT, SEGMENTATION, check_fields, check_list, shape


ANNOTATION = {"id": INT, "image_id": ID, "segmentation": SEGMENTATION}
ANNOTATION_OPTIONAL = {"iscrowd": BOOL}


class InstancesIndex:
    """A parsed COCO instances JSON: images and annotations by image id (ids as str). Every image and
    annotation is checked on reading (fields, types, sizes), so a bad file fails here, naming the entry."""

    def __init__(self, path: str | Path, what: str = "instances JSON") -> None:
        self.path = Path(path)
        where = f"{what} {self.path}"
        data = read_json(self.path, what)
        if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
            raise InputError(f"{where}: expected a COCO object with 'images' and 'annotations'; got {shape(data)}")
        self.data = data
        self.images = index_images(data["images"], where, unique_ids=True)
        self.anns_by_image: dict[str, list[dict[str, Any]]] = {i: [] for i in self.images}
        for k, a in enumerate(check_list(data["annotations"], f"{where}: 'annotations'", "annotation objects")):
            check_fields(a, f"{where}: annotation {k}", ANNOTATION, ANNOTATION_OPTIONAL)
            key = str(a["image_id"])
            if key not in self.images:
                raise InputError(f"{where}: annotation {a['id']} names unknown image_id {key}; add the image to "
                                 "'images' or drop the annotation")
            self.anns_by_image[key].append(a)
        for key, anns in self.anns_by_image.items():
            check_entities(len(anns), f"{where}: image {key}")

    def masks(self, image_id: str) -> EntityMasks:
        info = self.images[image_id]
        h, w = int(info["height"]), int(info["width"])
        anns = self.anns_by_image[image_id]
        if not anns:
            return EntityMasks.empty(h, w)
        where = f"instances JSON {self.path} image {image_id}"
        return EntityMasks(np.stack([segmentation_to_mask(a["segmentation"], h, w, f"{where} annotation {a.get('id')}")
                                     for a in anns]),
                           ids=np.array([int(a["id"]) for a in anns], np.int64))


def entity_subset(path: str | Path, image_ids: Iterable[str], out: str | Path) -> str:
    """Write the images ``image_ids`` of an EntitySeg-style JSON (and their annotations) to ``out``."""
    keep = {str(i) for i in image_ids}
    data = read_json(path, "EntitySeg JSON")
    write_json(out, {**data, "images": [im for im in data["images"] if str(im["id"]) in keep],
                     "annotations": [a for a in data["annotations"] if str(a["image_id"]) in keep]})
    return str(out)


class EntitySegDataset(Dataset):
    """Class-agnostic entity segmentation (EntitySeg-style COCO JSON with RLE masks).

    Sample keys: ``image_id`` (str), ``image``, ``masks`` (EntityMasks, ids = annotation ids; masks
    may overlap as the file allows), ``annotations`` (list of {id, category_id, bbox, area, iscrowd}
    aligned with the masks).
    Files: ``root/annotations/entityseg_<split>.json`` (or ``annotations_json``), images in
    ``root/<split>/`` or ``root/images/<split>/`` (or ``image_dir``)."""

    @dataclass
    class Config:
        root: str = ""
        split: str = "val"
        annotations_json: str = ""
        image_dir: str = ""

    name = "entityseg"

    def __init__(self, config: EntitySegDataset.Config) -> None:
        self.config = config

    def _path(self, explicit: str, candidates: list[str], what: str) -> Path:
        return dataset_file(self.config.root, self.name, explicit, candidates, what)

    @cached_property
    def index(self) -> InstancesIndex:
        split = self.config.split
        return InstancesIndex(self._path(self.config.annotations_json,
                                         [f"annotations/entityseg_{split}.json", f"entityseg_{split}.json"],
                                         "EntitySeg JSON"))

    @cached_property
    def image_dir(self) -> Path:
        split = self.config.split
        return self._path(self.config.image_dir, [split, f"images/{split}", "images"], "image folder")

    @cached_property
    def image_ids(self) -> list[str]:
        return list(self.index.images)

    def __len__(self) -> int:
        return len(self.image_ids)

    def ground_truth(self, evaluator: str, image_ids: Sequence[str], folder: str) -> tuple[str, dict[str, Any]]:
        """``entity``: this split's instances cut down to ``image_ids``, written into ``folder``."""
        if evaluator != "entity":
            return super().ground_truth(evaluator, image_ids, folder)
        Path(folder).mkdir(parents=True, exist_ok=True)
        return entity_subset(self.index.path, image_ids, Path(folder) / Path(self.index.path).name), {}

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        file_name = self.index.images[image_id].get("file_name")
        if not file_name:
            raise InputError(f"instances JSON {self.index.path}: image {image_id} has no file_name; add it")
        image = load_image(self.image_dir / file_name)
        masks = self.index.masks(image_id)
        masks.check_image_size(image.shape[0], image.shape[1], f"entity masks of image {image_id}")
        keys = ("id", "category_id", "bbox", "area", "iscrowd")
        anns = [{k: a[k] for k in keys if k in a} for a in self.index.anns_by_image[image_id]]
        return {"image_id": image_id, "image": image, "masks": masks, "annotations": anns}
