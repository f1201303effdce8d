"""COCO-panoptic reader: ``panoptic_<split>.json`` + one PNG id map per image (id = R + 256·G + 256²·B).

Works on the official COCO files (``annotations/panoptic_val2017.json``,
``annotations/panoptic_val2017/*.png``, images in ``val2017/``) and on ShapesWorld's, which use the
same layout."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core import Dataset, EntityMasks
from esgkit.core.errors import InputError
from esgkit.core.io import load_id_map_png, load_image

from .common import dataset_file, find_file, read_json


class PanopticIndex:
    """A parsed COCO-panoptic JSON: images, categories and segments by image id (ids as str)."""

    def __init__(self, json_path: str | Path, png_dir: str | Path | None = None) -> None:
        self.json_path = Path(json_path)
        data = read_json(self.json_path, "panoptic annotations")
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            raise InputError(
                f"panoptic annotations {self.json_path}: expected a COCO-panoptic JSON object with "
                "'images', 'annotations' and 'categories'"
            )
        self.png_dir = Path(png_dir) if png_dir else self.json_path.with_suffix("")
        try:
            self.categories: dict[int, dict[str, Any]] = {int(c["id"]): c for c in data["categories"]}
            self.images: dict[str, dict[str, Any]] = {str(i["id"]): i for i in data.get("images", [])}
            self.annotations: dict[str, dict[str, Any]] = {str(a["image_id"]): a for a in data["annotations"]}
        except (KeyError, TypeError) as exc:
            raise InputError(f"panoptic annotations {self.json_path}: bad entry ({type(exc).__name__}: {exc})") from exc
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
        """The image's segment-id map (int64 H×W), size-checked against the JSON."""
        ann = self.annotation(image_id)
        file_name = ann.get("file_name") or f"{int(image_id):012d}.png"
        path = self.png_dir / file_name
        if not path.is_file():
            raise InputError(f"panoptic PNG {path}: no such file (annotation of image {image_id})")
        id_map = load_id_map_png(path)
        info = self.images.get(str(image_id))
        if info and "height" in info and id_map.shape != (int(info["height"]), int(info["width"])):
            raise InputError(
                f"panoptic PNG {path}: is {id_map.shape[1]}x{id_map.shape[0]} (WxH) but "
                f"{self.json_path} says the image is {info['width']}x{info['height']}"
            )
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
        file_name = info.get("file_name") or f"{int(image_id):012d}.jpg"
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        return str(path), {"gt_dir": str(pan.png_dir)}
