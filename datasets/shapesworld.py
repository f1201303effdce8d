"""ShapesWorld: esgkit's synthetic benchmark, written in the real datasets' file formats.

``generate(out_dir, images, seed, size, split)`` writes (``<id>`` = 12-digit image id)::

    OUT/<split>/<id>.jpg                              images (or .png)
    OUT/annotations/panoptic_<split>.json             COCO-panoptic (things and stuff, isthing flags)
    OUT/annotations/panoptic_<split>/<id>.png         panoptic id maps (id = R + 256·G + 256²·B)
    OUT/annotations/png_coco_<split>.json             Panoptic Narrative Grounding narratives
    OUT/annotations/entityseg_<split>.json            EntitySeg-style class-agnostic instances (RLE)
    OUT/annotations/captions_<split>.json             short descriptions (COCO-captions format)
    OUT/refcoco_<split>/refs(unc).p, refs(unc).json   RefCOCO refs (pickle of plain data, and JSON)
    OUT/refcoco_<split>/instances.json                COCO instances of the things (polygons, or [RLE])
    OUT/refcoco+_<split>/...                          the same, RefCOCO+-style: no location words
    OUT/shapesworld_<split>.json                      generator settings, for provenance

Image ``k`` (0-based) of a split is drawn from ``numpy.random.default_rng([seed, crc32(split), k])``,
so the output is the same for any number of worker processes.

Every file is written atomically (``esgkit.core.outputs``): a kill leaves whole files or none. The
split's annotation JSONs come after its images (``panoptic_<split>.json`` last: they make the split
readable) and ``shapesworld_<split>.json`` last of all: it marks the split complete, while the hidden
``.shapesworld_<split>.pending.json`` (removed at the end) marks one being written; see
``datasets/shapesworld_files.py`` for what a rerun does with either.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.errors import ConfigError, InputError

from esgkit.core.io import read_json

from esgkit.core.outputs import atomic_path

from .common import exact_polygons, write_json
from .entityseg import entity_subset
from .png import PNGDataset, narrative_sample
from .refcoco import read_refs
from .shapesworld_files import annotation_files, pending_name
from .shapesworld_language import Describer, is_relational
from .shapesworld_scene import CATEGORY_IDS, SceneSettings, categories, make_scene

# the file format of a split: a split written by another version is a different one (shapesworld_files)
VERSION = "2"  # 2: instances.json masks are polygons or [RLE], as RefCOCO's refer.py reads them
MIN_SIDE, MAX_SIDE = 64, 8192


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (or one number for a square) → (width, height), checked against the supported range."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
        if len(parts) == 1:
            parts = parts * 2
        width, height = parts
    except ValueError as exc:
        raise InputError(f"size {text!r}: expected WxH, e.g. 512x512") from exc
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise InputError(f"size {text!r}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels "
                         "(the benchmark is designed for 256² to 4096²)")
    return width, height


def _rle(mask_t: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a mask given transposed (W, H) C-contiguous: its ``.T`` is Fortran-ordered."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(mask_t.view(np.uint8).T)
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _instance_segmentation(mask_t: np.ndarray, rle: dict[str, Any]) -> list[Any]:
    """A thing's mask as official RefCOCO writes it: polygons, when they rasterise back to exactly the
    mask (``exact_polygons``), else ``[RLE]`` (``refer.py`` and the loaders built on it read
    ``segmentation[0]``, so a bare RLE dict fails there)."""
    polygons = exact_polygons(mask_t.T)
    return polygons if polygons is not None else [rle]


def _save_id_map(path: Path, id_map: np.ndarray) -> None:
    """The COCO-panoptic PNG (id = R + 256·G + 256²·B), written fast: fewer than 2^16 ids here."""
    from PIL import Image

    rgb = np.zeros((*id_map.shape, 3), np.uint8)
    rgb[..., 0] = id_map & 255
    rgb[..., 1] = id_map >> 8
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, compress_level=1)


@dataclass
class _Job:
    out: str
    split: str
    index: int
    seed: int
    width: int
    height: int
    image_format: str
    settings: SceneSettings
    keep_existing: bool = False  # resuming: files already there are whole (atomic) and the same


def _make_one(job: _Job) -> dict[str, Any]:
    """Draw, describe and write one image; return its annotation records (ids still local)."""
    from PIL import Image

    rng = np.random.default_rng([job.seed, zlib.crc32(job.split.encode()), job.index])
    scene = make_scene(rng, job.height, job.width, job.settings)
    describer = Describer(scene, rng)
    pieces = describer.narrative()
    refs = describer.refs()
    image_id = job.index + 1
    stem = f"{image_id:012d}"
    out = Path(job.out)
    file_name = f"{stem}.{job.image_format}"
    image_path = out / job.split / file_name
    if not (job.keep_existing and image_path.is_file()):
        im = Image.fromarray(scene.image)
        with atomic_path(image_path) as tmp:
            if job.image_format == "jpg":
                im.save(tmp, quality=95, subsampling=0)
            else:
                im.save(tmp, compress_level=1)
    id_path = out / "annotations" / f"panoptic_{job.split}" / f"{stem}.png"
    if not (job.keep_existing and id_path.is_file()):
        _save_id_map(id_path, scene.id_map)

    id_t = np.ascontiguousarray(scene.id_map.T)
    segments, rles, instances = [], {}, {}
    for e in scene.entities:
        mask_t = id_t == e.id
        rles[e.id] = _rle(mask_t)
        if e.isthing:
            instances[e.id] = _instance_segmentation(mask_t, rles[e.id])
        segments.append({"id": e.id, "category_id": CATEGORY_IDS[e.category], "iscrowd": 0,
                         "bbox": list(e.bbox), "area": e.area})
    narrative = {
        "image_id": str(image_id),
        "caption": "".join(p.text for p in pieces),
        "segments": [{"utterance": p.text.strip(), "noun": bool(p.segment_ids),
                      "segment_ids": [str(i) for i in p.segment_ids], "plural": p.plural}
                     for p in pieces if p.text.strip()],
    }
    return {
        "image": {"id": image_id, "file_name": file_name, "height": job.height, "width": job.width},
        "segments": segments,
        "rles": rles,
        "instances": instances,
        "things": [e.id for e in scene.entities if e.isthing],
        "attributes": {e.id: {"color": e.color, "size": e.size, "texture": e.texture} for e in scene.entities if e.isthing},
        "narrative": narrative,
        "refs": [(t.id, sents) for t, sents in refs],
        # RefCOCO+-style: the same targets, named without location words (no RNG drawn: the split's
        # other files are the same with or without it)
        "refs_plus": [(t.id, plus) for t, _ in refs if (plus := describer.location_free(t))],
        "description": describer.description(),
    }


def provenance(images: int = 10, seed: int = 0, size: str | tuple[int, int] = (256, 256), split: str = "val",
               image_format: str = "jpg", settings: SceneSettings | None = None) -> dict[str, Any]:
    """The checked generator settings of a split, as ``shapesworld_<split>.json`` records them."""
    width, height = parse_size(size if isinstance(size, str) else f"{int(size[0])}x{int(size[1])}")
    if images < 1:
        raise InputError(f"--images must be at least 1 (got {images})")
    if image_format not in ("jpg", "png"):
        raise InputError(f"image format {image_format!r}: use jpg or png")
    if not split or any(c in split for c in "/\\ ") or split.startswith("."):
        raise InputError(f"split {split!r}: use a plain name such as train or val")
    return {"generator": "esgkit ShapesWorld", "version": VERSION, "seed": int(seed), "split": split,
            "images": images, "width": width, "height": height, "image_format": image_format,
            "settings": dataclasses.asdict(settings or SceneSettings())}


def generate(out_dir: str | Path, images: int = 10, seed: int = 0, size: str | tuple[int, int] = (256, 256),
             split: str = "val", workers: int = 1, image_format: str = "jpg",
             settings: SceneSettings | None = None, progress: bool = False, resume: bool = False) -> Path:
    """Write ``images`` ShapesWorld scenes of ``size`` (WxH string or (W, H)) as split ``split``
    under ``out_dir`` in every format listed in the module docstring; returns ``out_dir``. The split's
    earlier annotation files are removed first. ``resume``: keep the image files already there (those
    of an interrupted run with the same settings: ``shapesworld_files.split_state``)."""
    meta = provenance(images, seed, size, split, image_format, settings)
    width, height = meta["width"], meta["height"]
    out = Path(out_dir)
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
    write_json(out / pending_name(split), meta)  # this split is being written
    for path in (out / f"shapesworld_{split}.json", *annotation_files(out, split)):
        path.unlink(missing_ok=True)  # no earlier annotation ever describes the new images
    settings = settings or SceneSettings()
    jobs = [_Job(str(out), split, k, int(seed), width, height, image_format, settings, resume) for k in range(images)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            records = list(_progress(pool.imap(_make_one, jobs, chunksize=4), images, progress))
    else:
        records = list(_progress(map(_make_one, jobs), images, progress))
    _write_annotations(out, split, records)
    write_json(out / f"shapesworld_{split}.json", meta)  # last: the split is complete
    (out / pending_name(split)).unlink(missing_ok=True)
    return out


def _progress(iterable: Any, total: int, show: bool) -> Any:
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="ShapesWorld", unit="img")


def _write_annotations(out: Path, split: str, records: list[dict[str, Any]]) -> None:
    """The split's annotation files, each atomically; those the reader requires last, panoptic last of all."""
    cats = categories()
    images = [r["image"] for r in records]
    ann = out / "annotations"
    entity_anns, thing_anns = [], []
    for r in records:
        image_id = r["image"]["id"]
        for s in r["segments"]:
            a = {"id": image_id * 1000 + s["id"], "image_id": image_id, "category_id": s["category_id"],
                 "segmentation": r["rles"][s["id"]], "area": s["area"], "bbox": s["bbox"], "iscrowd": 0}
            entity_anns.append(a)
            if s["id"] in r["things"]:
                thing_anns.append({**a, "segmentation": r["instances"][s["id"]], **r["attributes"][s["id"]]})
    write_json(ann / f"entityseg_{split}.json", {"images": images, "annotations": entity_anns, "categories": cats})

    instances = {"images": images, "annotations": thing_anns, "categories": [c for c in cats if c["isthing"]]}
    for prefix, key in REF_SETS.items():
        _write_refs(out / f"{prefix}_{split}", split, records, key, instances)
    write_json(ann / f"captions_{split}.json", {
        "images": images,
        "annotations": [{"id": r["image"]["id"], "image_id": r["image"]["id"], "caption": r["description"]}
                        for r in records],
    })
    write_json(ann / f"png_coco_{split}.json", [r["narrative"] for r in records])
    write_json(ann / f"panoptic_{split}.json", {
        "info": {"description": f"ShapesWorld {split}", "version": VERSION},
        "licenses": [], "images": images, "categories": cats,
        "annotations": [{"image_id": r["image"]["id"], "file_name": f"{r['image']['id']:012d}.png",
                         "segments_info": r["segments"]} for r in records],
    })


REF_SETS = {"refcoco": "refs", "refcoco+": "refs_plus"}
"""The RefCOCO-style folders of a split (``<prefix>_<split>/``) and the record key of their expressions."""
EXPRESSION_FILTERS = ("all", "relational", "other")


def _write_refs(ref_dir: Path, split: str, records: list[dict[str, Any]], key: str, instances: dict[str, Any]) -> None:
    """One RefCOCO-style folder: ``instances.json``, ``refs(unc).p`` (plain data, protocol 2 as the
    official files) and the same list as ``refs(unc).json``; ref and sentence ids count from 0."""
    refs, ref_id, sent_id = [], 0, 0
    for r in records:
        image_id = r["image"]["id"]
        for segment_id, sentences in r[key]:
            category_id = next(s["category_id"] for s in r["segments"] if s["id"] == segment_id)
            sents = []
            for text in sentences:
                sents.append({"tokens": text.split(), "raw": text, "sent_id": sent_id, "sent": text})
                sent_id += 1
            refs.append({"ref_id": ref_id, "ann_id": image_id * 1000 + segment_id, "image_id": image_id,
                         "split": split, "sentences": sents, "sent_ids": [s["sent_id"] for s in sents],
                         "category_id": category_id, "file_name": f"{image_id:012d}_{ref_id}.jpg",
                         "segment_id": segment_id})
            ref_id += 1
    write_json(ref_dir / "instances.json", instances)
    with atomic_path(ref_dir / "refs(unc).p") as tmp, open(tmp, "wb") as f:
        pickle.dump(refs, f, protocol=2)
    write_json(ref_dir / "refs(unc).json", refs)


class ShapesWorldDataset(PNGDataset):
    """A ShapesWorld split with every annotation it has (what GELLA training and CropFormer use).

    Sample keys: those of ``png`` (``image_id``, ``image``, ``file_name``, ``height``, ``width``,
    ``masks`` with panoptic segment ids, ``segments_info``, ``caption``, ``phrase_segments``,
    ``phrase_is_thing``, ``narrative_index``) plus ``refs`` (list of {ref_id, sent_id, sent, ann_id,
    segment_id, bbox, category_id}; ``segment_id`` is the id in ``masks``) and ``description``
    (str, the short image description). Root: the folder ``esgkit data shapesworld`` wrote.
    ``refs: refcoco+`` reads the RefCOCO+-style expressions (no location words) instead;
    ``expressions: relational`` / ``other`` keeps only the expressions that do / do not name a
    relation to something else ("the circle left of the blue square", "the star on the grass")."""

    @dataclass
    class Config(PNGDataset.Config):
        split: str = "val"
        refs: str = "refcoco"  # refcoco | refcoco+ (the same targets named without location words)
        expressions: str = "all"  # all | relational (a relation to another entity or stuff) | other (the rest)

    name = "shapesworld"

    def __init__(self, config: ShapesWorldDataset.Config) -> None:
        super().__init__(config)
        if config.refs not in REF_SETS:
            raise ConfigError(f"refs {config.refs!r}: expected one of {', '.join(REF_SETS)}", key="dataset.refs")
        if config.expressions not in EXPRESSION_FILTERS:
            raise ConfigError(f"expressions {config.expressions!r}: expected one of {', '.join(EXPRESSION_FILTERS)}",
                              key="dataset.expressions")

    def keeps(self, sentence: str) -> bool:
        """Whether the ``expressions`` filter keeps ``sentence``."""
        return self.config.expressions == "all" or is_relational(sentence) == (self.config.expressions == "relational")

    def _filtered_refs(self) -> list[dict[str, Any]]:
        """The refs of the split with only the sentences the ``expressions`` filter keeps (refs left
        with none are dropped)."""
        refs = read_refs(Path(self._path("", [self.refs_dir.name], "RefCOCO folder")) / "refs(unc).json")
        out = [{**r, "sentences": [s for s in r["sentences"] if self.keeps(s["sent"])]} for r in refs]
        return [r for r in out if r["sentences"]]

    @property
    def refs_dir(self) -> Path:
        """The RefCOCO-style folder the ``refs`` come from (``refs``: refcoco or refcoco+)."""
        return Path(self.config.root) / f"{self.config.refs}_{self.config.split}"

    def required_files(self) -> list[Path]:
        """The files of the split (what ``esgkit data shapesworld`` writes), under ``root``."""
        root, split = Path(self.config.root), self.config.split
        return [root / "annotations" / f"panoptic_{split}.json", root / "annotations" / f"png_coco_{split}.json",
                root / "annotations" / f"captions_{split}.json", self.refs_dir / "refs(unc).json",
                root / split, root / "annotations" / f"panoptic_{split}"]

    def check_files(self) -> Path:
        """Raise an InputError naming the folder and the first missing file of the split, with the
        command that makes it."""
        root, split = Path(self.config.root), self.config.split
        if not self.config.root:
            raise InputError("dataset shapesworld: no root given; set root=<folder written by `esgkit data shapesworld`>")
        make = f"`esgkit data shapesworld {root} --split {split}`"
        if not root.is_dir():
            raise InputError(f"data folder {root} does not exist; make one with {make}")
        if (root / pending_name(split)).is_file():
            raise InputError(f"split {split!r} of {root} was interrupted while being written; rerun the command that "
                             "wrote it (the same `esgkit data shapesworld` line) to finish it")
        for path in self.required_files():
            if not path.exists():
                raise InputError(f"data folder {root} has no {path.relative_to(root)} (split {split!r}); make the "
                                 f"split with {make} or pass the right --data/--split")
        return root

    def _path(self, explicit: str, candidates: list[str], what: str) -> Path:
        if not explicit:
            self.check_files()
        return super()._path(explicit, candidates, what)

    def ground_truth(self, evaluator: str, image_ids: Sequence[str], folder: str) -> tuple[str, dict[str, Any]]:
        """The split's annotations cut down to ``image_ids`` and written into ``folder``: ``png``
        (the narratives, in file order; scored with this split's panoptic files), ``res`` / ``rec``
        (the refs) and ``entity`` (the EntitySeg-style instances)."""
        root, split, keep = self.check_files(), self.config.split, {str(i) for i in image_ids}
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        if evaluator == "png":
            narratives = read_json(root / "annotations" / f"png_coco_{split}.json", "narrative JSON")
            path = out / f"png_coco_{split}.json"
            write_json(path, [n for n in narratives if str(n["image_id"]) in keep])
            return str(path), {"panoptic_json": str(root / "annotations" / f"panoptic_{split}.json"),
                               "panoptic_dir": str(root / "annotations" / f"panoptic_{split}")}
        if evaluator in ("res", "rec"):
            path = out / "refs(unc).json"
            write_json(path, [r for r in self._filtered_refs() if str(r["image_id"]) in keep])
            return str(path), {"instances_json": str(self.refs_dir / "instances.json")}
        if evaluator == "entity":
            return entity_subset(root / "annotations" / f"entityseg_{split}.json", keep, out / f"entityseg_{split}.json"), {}
        return super().ground_truth(evaluator, image_ids, folder)

    @cached_property
    def narratives_by_image(self) -> dict[str, Any]:
        return {n.image_id: n for n in self.narratives}

    @cached_property
    def refs_by_image(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self._filtered_refs():
            segment_id = int(r.get("segment_id", int(r["ann_id"]) % 1000))
            for s in r["sentences"]:
                out.setdefault(str(r["image_id"]), []).append({
                    "ref_id": int(r["ref_id"]), "sent_id": int(s["sent_id"]), "sent": s["sent"],
                    "ann_id": int(r["ann_id"]), "segment_id": segment_id, "category_id": int(r["category_id"]),
                })
        return out

    @cached_property
    def descriptions(self) -> dict[str, str]:
        path = self._path("", [f"annotations/captions_{self.config.split}.json"], "captions JSON")
        data = read_json(path, "captions JSON")
        try:
            return {str(a["image_id"]): str(a["caption"]) for a in data["annotations"]}
        except (KeyError, TypeError) as exc:
            raise InputError(f"captions JSON {path}: bad entry ({type(exc).__name__}: {exc})") from exc

    def __len__(self) -> int:
        return len(self.panoptic.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.panoptic.image_ids[index]
        sample = self.panoptic_sample(image_id)
        narrative = self.narratives_by_image.get(image_id)
        if narrative is not None:
            sample.update(narrative_sample(narrative, sample["segments_info"], self.panoptic.json_path))
        boxes = {s["id"]: s["bbox"] for s in sample["segments_info"]}
        sample["refs"] = [{**r, "bbox": [float(v) for v in boxes[r["segment_id"]]]}
                          for r in self.refs_by_image.get(image_id, [])]
        sample["description"] = self.descriptions.get(image_id, "")
        return sample


__all__ = ["ShapesWorldDataset", "generate", "parse_size", "provenance"]
