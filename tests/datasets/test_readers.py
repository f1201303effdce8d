"""Readers on small hand-made files in each official format, on ShapesWorld's output, and their
errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from esgkit.core import get_registry
from esgkit.core.errors import InputError
from esgkit.core.io import save_id_map_png
from esgkit.core.types import encode_rle
from esgkit.datasets.coco_panoptic import CocoPanopticDataset
from esgkit.datasets.common import read_plain_pickle
from esgkit.datasets.entityseg import EntitySegDataset
from esgkit.datasets.png import PNGDataset
from esgkit.datasets.refcoco import RefCocoDataset
from esgkit.datasets.shapesworld import ShapesWorldDataset

# COCO-style segment ids are colours: id = R + 256·G + 256²·B
SKY, PERSON_A, PERSON_B = 8421504, 3226956, 65793


def _coco_panoptic(root: Path) -> None:
    """Two 6×4 images in the official COCO layout with colour-coded segment ids."""
    (root / "val2017").mkdir(parents=True)
    id_maps = {139: np.full((4, 6), SKY), 285: np.full((4, 6), SKY)}
    id_maps[139][1:3, 0:2] = PERSON_A
    id_maps[139][1:3, 4:6] = PERSON_B
    id_maps[285][0, 0] = 0  # VOID pixel
    anns = []
    for image_id, id_map in id_maps.items():
        save_id_map_png(root / "annotations/panoptic_val2017" / f"{image_id:012d}.png", id_map)
        Image.fromarray(np.full((4, 6, 3), 100, np.uint8)).save(root / "val2017" / f"{image_id:012d}.jpg")
        segs = [{"id": SKY, "category_id": 187, "iscrowd": 0, "bbox": [0, 0, 6, 4], "area": 16}]
        if image_id == 139:
            segs += [{"id": PERSON_A, "category_id": 1, "iscrowd": 0, "bbox": [0, 1, 2, 2], "area": 4},
                     {"id": PERSON_B, "category_id": 1, "iscrowd": 0, "bbox": [4, 1, 2, 2], "area": 4}]
        anns.append({"image_id": image_id, "file_name": f"{image_id:012d}.png", "segments_info": segs})
    (root / "annotations/panoptic_val2017.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 4, "width": 6} for i in id_maps],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "isthing": 1, "supercategory": "person"},
                       {"id": 187, "name": "sky-other-merged", "isthing": 0, "supercategory": "sky"}],
    }))


@pytest.fixture
def coco_root(tmp_path):
    _coco_panoptic(tmp_path)
    return tmp_path


def test_coco_panoptic_reads_official_layout(coco_root):
    ds = CocoPanopticDataset(CocoPanopticDataset.Config(root=str(coco_root)))
    assert len(ds) == 2
    s = ds[0]
    assert s["image_id"] == "139" and s["image"].shape == (4, 6, 3)
    assert s["masks"].ids.tolist() == [SKY, PERSON_A, PERSON_B]
    assert s["masks"].masks[1].sum() == 4 and s["masks"].masks[1][1:3, 0:2].all()
    assert [x["isthing"] for x in s["segments_info"]] == [False, True, True]
    assert s["segments_info"][1]["category"] == "person"
    assert ds[1]["masks"].masks[0].sum() == 23  # the VOID pixel belongs to no segment


def test_png_reads_official_narratives(coco_root):
    narratives = [{
        "image_id": "139",
        "caption": "In this picture we can see two people and the sky.",
        "segments": [
            {"utterance": "In this picture we can see", "noun": False, "segment_ids": [], "plural": False},
            {"utterance": "two people", "noun": True, "segment_ids": [str(PERSON_A), str(PERSON_B)], "plural": True},
            {"utterance": "and", "noun": False, "segment_ids": [], "plural": False},
            {"utterance": "the sky", "noun": True, "segment_ids": [str(SKY)], "plural": False},
            {"utterance": "picture", "noun": True, "segment_ids": [], "plural": False},  # noun without a segment
        ],
    }]
    (coco_root / "annotations/png_coco_val2017.json").write_text(json.dumps(narratives))
    ds = PNGDataset(PNGDataset.Config(root=str(coco_root)))
    assert len(ds) == 1
    s = ds[0]
    assert [p.text for p in s["caption"].phrases] == ["two people", "the sky"]
    assert [p.plural for p in s["caption"].phrases] == [True, False]
    p = s["caption"].phrases[0]
    assert s["caption"].text[p.start:p.end] == "two people"
    assert s["phrase_segments"] == [[PERSON_A, PERSON_B], [SKY]]
    assert s["phrase_is_thing"] == [True, False]


def test_png_utterance_missing_from_caption_is_an_error(coco_root):
    bad = [{"image_id": "139", "caption": "a sky", "segments": [
        {"utterance": "the moon", "noun": True, "segment_ids": [str(SKY)], "plural": False}]}]
    (coco_root / "annotations/png_coco_val2017.json").write_text(json.dumps(bad))
    ds = PNGDataset(PNGDataset.Config(root=str(coco_root)))
    with pytest.raises(InputError, match="png_coco_val2017.json.*the moon"):
        len(ds)


def _refcoco(root: Path, protocol: int = 0) -> None:
    """A RefCOCO-style folder: refs(unc).p (plain data) + instances.json with polygon masks."""
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "images/COCO_train2014_000000000009.jpg")
    instances = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 10, "width": 12}],
        "annotations": [
            {"id": 101, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 16.0, "bbox": [1, 1, 4, 4],
             "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},
            {"id": 102, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 9.0, "bbox": [7, 2, 3, 3],
             "segmentation": [[7, 2, 10, 2, 10, 5, 7, 5]]},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    (root / "instances.json").write_text(json.dumps(instances))
    refs = [
        {"ref_id": 0, "ann_id": 101, "image_id": 9, "split": "val", "category_id": 1, "sent_ids": [0, 1],
         "file_name": "COCO_train2014_000000000009_101.jpg",
         "sentences": [{"tokens": ["left", "guy"], "raw": "Left guy", "sent_id": 0, "sent": "left guy"},
                       {"tokens": ["man", "on", "left"], "raw": "man on left", "sent_id": 1, "sent": "man on left"}]},
        {"ref_id": 1, "ann_id": 102, "image_id": 9, "split": "testA", "category_id": 1, "sent_ids": [2],
         "file_name": "COCO_train2014_000000000009_102.jpg",
         "sentences": [{"tokens": ["right"], "raw": "right", "sent_id": 2, "sent": "right"}]},
    ]
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_refcoco_reads_pickle_and_polygons(tmp_path, protocol):
    _refcoco(tmp_path, protocol)
    ds = RefCocoDataset(RefCocoDataset.Config(root=str(tmp_path), split="val"))
    assert len(ds) == 1
    s = ds[0]
    assert s["masks"].ids.tolist() == [101, 102]
    assert s["masks"].masks[0].sum() == 16
    assert [r["sent"] for r in s["refs"]] == ["left guy", "man on left"]
    assert {r["segment_id"] for r in s["refs"]} == {101}
    assert s["refs"][0]["bbox"] == [1.0, 1.0, 4.0, 4.0]
    every = RefCocoDataset(RefCocoDataset.Config(root=str(tmp_path), split=""))
    assert len(every[0]["refs"]) == 3


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("payload", [[{"ref_id": _Evil()}], {1, 2}, np.zeros(3)], ids=["reduce", "set", "ndarray"])
def test_refs_pickle_with_non_plain_data_is_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(InputError, match=r"refs\(unc\)\.p.*only plain data"):
        read_plain_pickle(path, "refs file")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"a": 1}])[:-3])
    with pytest.raises(InputError, match="not a readable pickle"):
        read_plain_pickle(path)


def test_entityseg_reads_rle_and_overlaps(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "images/a.jpg")
    m1 = np.zeros((5, 7), bool)
    m1[:3, :4] = True
    m2 = np.zeros((5, 7), bool)
    m2[2:, 3:] = True  # overlaps m1 at (2, 3)
    uncompressed = {"size": [5, 7], "counts": [10, 5, 20]}  # column-major runs
    data = {"images": [{"id": "a", "file_name": "a.jpg", "height": 5, "width": 7}],
            "annotations": [{"id": 1, "image_id": "a", "category_id": 3, "segmentation": encode_rle(m1), "bbox": [0, 0, 4, 3], "area": 12, "iscrowd": 0},
                            {"id": 2, "image_id": "a", "category_id": 9, "segmentation": encode_rle(m2), "bbox": [3, 2, 4, 3], "area": 12, "iscrowd": 0},
                            {"id": 3, "image_id": "a", "category_id": 9, "segmentation": uncompressed, "bbox": [2, 0, 1, 5], "area": 5, "iscrowd": 1}],
            "categories": [{"id": 3, "name": "x"}, {"id": 9, "name": "y"}]}
    (tmp_path / "entityseg_val.json").write_text(json.dumps(data))
    ds = EntitySegDataset(EntitySegDataset.Config(root=str(tmp_path)))
    s = ds[0]
    assert s["masks"].ids.tolist() == [1, 2, 3]
    assert (s["masks"].masks[0] == m1).all() and (s["masks"].masks[1] == m2).all()
    assert s["masks"].masks[2].sum() == 5 and s["masks"].masks[2][:, 2].all()
    assert s["annotations"][2]["iscrowd"] == 1


def test_readers_agree_on_shapesworld(sw_root):
    sw = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(sw_root), split="val"))
    pan = CocoPanopticDataset(CocoPanopticDataset.Config(root=str(sw_root), split="val"))
    png = PNGDataset(PNGDataset.Config(root=str(sw_root), split="val"))
    ent = EntitySegDataset(EntitySegDataset.Config(root=str(sw_root), split="val"))
    ref = RefCocoDataset(RefCocoDataset.Config(root=str(sw_root / "refcoco_val"), split="val",
                                               image_dir=str(sw_root / "val")))
    assert len(sw) == len(pan) == len(png) == len(ent) == 6
    a, b, c, d = sw[2], pan[2], png[2], ent[2]
    assert (a["image"] == b["image"]).all()
    assert (a["masks"].masks == b["masks"].masks).all()
    assert (d["masks"].masks == a["masks"].masks).all()
    assert (d["masks"].ids == a["masks"].ids + 3000).all()  # ann id = image id · 1000 + segment id
    assert c["caption"] == a["caption"] and c["phrase_segments"] == a["phrase_segments"]
    by_ann = {r["sent_id"]: r for s in ref for r in s["refs"]}
    for r in a["refs"]:
        assert by_ann[r["sent_id"]]["ann_id"] == r["ann_id"] == 3000 + r["segment_id"]
        assert by_ann[r["sent_id"]]["bbox"] == r["bbox"]
    refs_from_pickle = RefCocoDataset(RefCocoDataset.Config(root=str(sw_root / "refcoco_val"), split="val",
                                                            refs_file="refs(unc).json", image_dir=str(sw_root / "val")))
    assert [s["refs"] for s in refs_from_pickle] == [s["refs"] for s in ref]


def test_datasets_build_from_default_config_and_fail_clearly_on_use():
    reg = get_registry()
    for name in ("coco_panoptic", "png", "refcoco", "entityseg", "shapesworld"):
        ds = reg.build("dataset", {"name": name})
        with pytest.raises(InputError, match=f"dataset {name}: no root given"):
            len(ds)


def test_missing_root_and_files_are_named(tmp_path):
    ds = CocoPanopticDataset(CocoPanopticDataset.Config(root=str(tmp_path / "nope")))
    with pytest.raises(InputError, match="nope is not a folder"):
        len(ds)
    ds = CocoPanopticDataset(CocoPanopticDataset.Config(root=str(tmp_path)))
    with pytest.raises(InputError, match="panoptic JSON not found.*panoptic_val2017.json"):
        len(ds)


def test_malformed_json_is_named(coco_root):
    path = coco_root / "annotations/panoptic_val2017.json"
    path.write_text('{"images": [')
    with pytest.raises(InputError, match="panoptic_val2017.json: malformed JSON"):
        len(CocoPanopticDataset(CocoPanopticDataset.Config(root=str(coco_root))))


def test_id_map_of_the_wrong_size_is_named(coco_root):
    save_id_map_png(coco_root / "annotations/panoptic_val2017/000000000139.png", np.full((5, 6), SKY))
    ds = CocoPanopticDataset(CocoPanopticDataset.Config(root=str(coco_root)))
    with pytest.raises(InputError, match="000000000139.png: is 6x5"):
        ds[0]


def test_png_utterances_are_found_despite_case_and_spacing():
    from esgkit.datasets.png import parse_narrative

    entry = {"image_id": "1", "caption": "We see Two  People near the sky. The sky is blue.", "segments": [
        {"utterance": "two people", "noun": True, "segment_ids": [1, 2], "plural": True},
        {"utterance": "the sky", "noun": True, "segment_ids": [3], "plural": False},
        {"utterance": "The sky", "noun": True, "segment_ids": [3], "plural": False}]}
    n = parse_narrative(entry, 0, "test")
    assert [(p.text, p.start) for p in n.caption.phrases] == [("Two  People", 7), ("the sky", 24), ("The sky", 33)]
    assert n.phrase_segments == ((1, 2), (3,), (3,))
