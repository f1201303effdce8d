"""COCO-panoptic reader: ``panoptic_<split>.json`` + one PNG id map per image (id = R + 256·G + 256²·B).

Works on the official COCO files (``annotations/panoptic_val2017.json``,
``annotations/panoptic_val2017/*.png``, images in ``val2017/``) and on ShapesWorld's, which use the
same layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Dataset, EntityMasks
from esgkit.core.errors import InputError
from esgkit.core.io import load_id_map_png, load_image, read_json
from esgkit.core.limits import check_entities

from .common import dataset_file, find_file, index_images, write_json
from esgkit.core.fields import BOOL, ID, INT, LIST, POSITIVE, TEXT, check_fields, check_list, shape


SEGMENT = {"id": POSITIVE, "category_id": INT}


def panoptic_segments(segments: Any, where: str) -> dict[int, dict[str, Any]]:
    """An annotation's ``segments_info`` checked (each {id > 0, category_id}, ids unique) → by id."""
    out: dict[int, dict[str, Any]] = {}
    for j, s in enumerate(check_list(segments, f"{where}: segments_info", "{id, category_id} objects")):
        check_fields(s, f"{where} segment {j}", SEGMENT, {"iscrowd": BOOL})
        if s["id"] in out:
            raise InputError(f"{where}: segment id {s['id']} is listed twice in segments_info; ids must be unique")
        out[s["id"]] = s
    check_entities(len(out), where)
    return out


def panoptic_annotations(annotations: Any, where: str, file_name_required: bool = True
                         ) -> dict[str, tuple[dict[str, Any], dict[int, dict[str, Any]]]]:
    """A COCO-panoptic ``annotations`` list (ground truth, or predictions with ``file_name_required``
    off) checked: each ``{image_id, file_name, segments_info}``, one per image, its segments by
    ``panoptic_segments``. By image id (as a string): ``(annotation, its segments by id)``."""
    required = {"image_id": ID, "segments_info": LIST, **({"file_name": TEXT} if file_name_required else {})}
    optional = {} if file_name_required else {"file_name": TEXT}
    out: dict[str, tuple[dict[str, Any], dict[int, dict[str, Any]]]] = {}
    for k, a in enumerate(check_list(annotations, f"{where}: 'annotations'", "{image_id, file_name, segments_info} objects")):
        at = f"{where}: annotation {k}"
        check_fields(a, at, required, optional)
        if str(a["image_id"]) in out:
            raise InputError(f"{at} repeats image_id {a['image_id']}; one annotation per image")
        out[str(a["image_id"])] = (a, panoptic_segments(a["segments_info"], f"{at} (image {a['image_id']})"))
    return out


class PanopticIndex:
    """A parsed COCO-panoptic JSON: images, categories and segments by image id (ids as str). Every
    entry is checked on reading, and every PNG when it is read (size, ids), naming what is wrong."""

    def __init__(self, json_path: str | Path, png_dir: str | Path | None = None) -> None:
        self.json_path = Path(json_path)
        where = f"panoptic annotations {self.json_path}"
        data = read_json(self.json_path, "panoptic annotations")
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            raise InputError(f"{where}: expected a COCO-panoptic JSON object with 'images', 'annotations' "
                             f"and 'categories'; got {shape(data)}")
        self.png_dir = Path(png_dir) if png_dir else self.json_path.with_suffix("")
        self.categories: dict[int, dict[str, Any]] = {}
        for k, c in enumerate(check_list(data["categories"], f"{where}: 'categories'", "{id, name, isthing} objects")):
            self.categories[check_fields(c, f"{where}: category {k}", {"id": INT}, {"isthing": BOOL})["id"]] = c
        self.images = index_images(data.get("images", []), where)
        self.annotations: dict[str, dict[str, Any]] = {}
        for key, (a, segments) in panoptic_annotations(data["annotations"], where).items():
            for s in segments.values():
                if s["category_id"] not in self.categories:
                    raise InputError(f"{where}: image {a['image_id']} segment {s['id']} has unknown category_id "
                                     f"{s['category_id']}; add it to 'categories'")
            self.annotations[key] = a
        self.image_ids = [i for i in self.images if i in self.annotations] or list(self.annotations)

    def isthing(self, category_id: int) -> bool:
        return bool(self.categories.get(int(category_id), {}).get("isthing", 0))

    def segments_info(self, image_id: str) -> list[dict[str, Any]]:
        """The image's segments with the category name and ``isthing`` flag filled in."""
        out = []
        for s in self.annotation(image_id).get("segments_info", []):
            cat = self.categories.get(int(s["category_id"]))
            if cat is None:
                raise InputError(
                    f"panoptic annotations {self.json_path}: image {image_id} segment {s['id']} has "
                    f"unknown category_id {s['category_id']}"
                )
            out.append({**s, "id": int(s["id"]), "category": cat.get("name", str(cat["id"])),
                        "isthing": bool(cat.get("isthing", 0))})
        return out

    def annotation(self, image_id: str) -> dict[str, Any]:
        ann = self.annotations.get(str(image_id))
        if ann is None:
            raise InputError(f"panoptic annotations {self.json_path}: no annotation for image id {image_id}")
        return ann

    def id_map(self, image_id: str) -> np.ndarray:
        """The image's segment-id map (int64 H×W), checked against the JSON: its size, and that every
        id but 0 (VOID) is one of the image's ``segments_info``."""
        ann = self.annotation(image_id)
        path = self.png_dir / ann["file_name"]
        if not path.is_file():
            raise InputError(f"panoptic PNG {path}: no such file (annotation of image {image_id} in {self.json_path})")
        id_map = load_id_map_png(path)
        info = self.images.get(str(image_id))
        if info and id_map.shape != (info["height"], info["width"]):
            raise InputError(
                f"panoptic PNG {path}: is {id_map.shape[1]}x{id_map.shape[0]} (WxH) but "
                f"{self.json_path} says the image is {info['width']}x{info['height']}"
            )
        stray = sorted(set(np.unique(id_map).tolist()) - {0} - {s["id"] for s in ann["segments_info"]})
        if stray:
            raise InputError(f"panoptic PNG {path}: holds segment ids {stray[:5]} that {self.json_path} does not "
                             f"list in segments_info of image {image_id}; list them there or paint them 0 (VOID)")
        return id_map

    def masks(self, image_id: str) -> EntityMasks:
        """One mask per listed segment, ids = segment ids (order of ``segments_info``)."""
        id_map = self.id_map(image_id)
        ids = [int(s["id"]) for s in self.annotation(image_id).get("segments_info", [])]
        if not ids:
            return EntityMasks.empty(*id_map.shape)
        return EntityMasks(np.stack([id_map == i for i in ids]), ids=np.array(ids, np.int64))


class CocoPanopticDataset(Dataset):
    """COCO-panoptic images with their panoptic segments as entity masks.

    Sample keys: ``image_id`` (str), ``image`` (uint8 H×W×3), ``file_name``, ``height``, ``width``,
    ``masks`` (EntityMasks, ids = panoptic segment ids), ``segments_info`` (list of {id,
    category_id, category, isthing, iscrowd, area, bbox} aligned with the masks).
    Files: ``root/annotations/panoptic_<split>.json``, ``root/annotations/panoptic_<split>/``, images
    in ``root/<split>/`` (or ``root/images/<split>/``); each can be set explicitly."""

    @dataclass
    class Config:
        root: str = ""
        split: str = "val2017"
        panoptic_json: str = ""  # default: root/annotations/panoptic_<split>.json
        panoptic_dir: str = ""  # default: the JSON's path without .json
        image_dir: str = ""  # default: root/<split> or root/images/<split>

    name = "coco_panoptic"

    def __init__(self, config: CocoPanopticDataset.Config) -> None:
        self.config = config

    # paths are resolved on first use, so a default config builds without data
    def _path(self, explicit: str, candidates: list[str], what: str) -> Path:
        return dataset_file(self.config.root, self.name, explicit, candidates, what)

    @cached_property
    def panoptic(self) -> PanopticIndex:
        split = self.config.split
        json_path = self._path(self.config.panoptic_json, [f"annotations/panoptic_{split}.json",
                                                         f"panoptic_{split}.json"], "panoptic JSON")
        png_dir = self.config.panoptic_dir or None
        if png_dir is None:
            png_dir = find_file([json_path.with_suffix(""),
                                 json_path.parent / "panoptic_segmentation" / split], "panoptic PNG folder")
        return PanopticIndex(json_path, png_dir)

    @cached_property
    def image_dir(self) -> Path:
        split = self.config.split
        return self._path(self.config.image_dir, [split, f"images/{split}"], "image folder")

    def __len__(self) -> int:
        return len(self.panoptic.image_ids)

    def load_image(self, image_id: str) -> np.ndarray:
        info = self.panoptic.images.get(image_id, {})
        file_name = info.get("file_name") or (f"{int(image_id):012d}.jpg" if image_id.isdigit() else f"{image_id}.jpg")
        return load_image(self.image_dir / file_name)

    def panoptic_sample(self, image_id: str) -> dict[str, Any]:
        pan = self.panoptic
        image = self.load_image(image_id)
        masks = pan.masks(image_id)
        masks.check_image_size(image.shape[0], image.shape[1], f"panoptic masks of image {image_id}")
        info = pan.images.get(image_id, {})
        return {
            "image_id": image_id,
            "image": image,
            "file_name": info.get("file_name", ""),
            "height": image.shape[0],
            "width": image.shape[1],
            "masks": masks,
            "segments_info": pan.segments_info(image_id),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.panoptic_sample(self.panoptic.image_ids[index])

    def ground_truth(self, evaluator: str, image_ids: Sequence[str], folder: str) -> tuple[str, dict[str, Any]]:
        """``panoptic``: the panoptic JSON cut down to ``image_ids`` (written into ``folder``), scored
        with the split's own PNG folder."""
        if evaluator != "panoptic":
            return super().ground_truth(evaluator, image_ids, folder)
        pan, keep = self.panoptic, {str(i) for i in image_ids}
        data = read_json(pan.json_path, "panoptic annotations")
        data = {**data, "images": [i for i in data.get("images", []) if str(i["id"]) in keep],
                "annotations": [a for a in data["annotations"] if str(a["image_id"]) in keep]}
        path = Path(folder) / pan.json_path.name
        write_json(path, data)  # atomic
        return str(path), {"gt_dir": str(pan.png_dir)}
