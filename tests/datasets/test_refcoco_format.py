"""ShapesWorld's RefCOCO ``instances.json`` is read by the official ``refer.py`` logic (polygons or
``[RLE]``, never a bare RLE dict), and esgkit's readers read every official segmentation variant."""

from __future__ import annotations

import json

import numpy as np
import pytest
from esgkit.core.errors import InputError
from esgkit.core.io import load_id_map_png
from esgkit.core.types import decode_rle, encode_rle
from esgkit.datasets.common import exact_polygons, segmentation_to_mask
from esgkit.datasets.refcoco import RefCocoDataset
from esgkit.datasets.shapesworld import VERSION, provenance
from esgkit.datasets.shapesworld_files import split_state
from esgkit.evaluation.referring import RECEvaluator, RESEvaluator

SPLITS = ("train", "val")  # of the tiny_shapesworld fixture


def refer_get_mask(ann: dict, image: dict) -> np.ndarray:
    """What RefCOCO's ``refer.py`` ``getMask`` does (written here from its documented behaviour):
    a segmentation whose first item is a list is polygons, anything else is taken as a list of RLEs;
    the decoded (H, W, N) stack is summed over N."""
    from pycocotools import mask as mask_utils

    h, w = image["height"], image["width"]
    if type(ann["segmentation"][0]) == list:  # the loader's own test, kept as it is
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
    else:
        rle = ann["segmentation"]
    return np.sum(mask_utils.decode(rle), axis=2).astype(bool)


def _instances(root, split):
    return json.loads((root / f"refcoco_{split}" / "instances.json").read_text())


@pytest.mark.parametrize("split", SPLITS)
def test_refer_py_reads_shapesworld_instances_exactly(tiny_shapesworld, split):
    root, data = tiny_shapesworld, _instances(tiny_shapesworld, split)
    images = {i["id"]: i for i in data["images"]}
    entities = {a["id"]: a for a in json.loads((root / "annotations" / f"entityseg_{split}.json").read_text())["annotations"]}
    kinds = set()
    for ann in data["annotations"]:
        seg = ann["segmentation"]
        assert isinstance(seg, list) and seg, "a bare RLE dict fails refer.py's segmentation[0]"
        if isinstance(seg[0], dict):
            kinds.add("[RLE]")
            assert len(seg) == 1 and isinstance(seg[0]["counts"], str)
        else:
            kinds.add("polygons")
            assert all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)
        image = images[ann["image_id"]]
        mask = refer_get_mask(ann, image)
        id_map = load_id_map_png(root / "annotations" / f"panoptic_{split}" / f"{ann['image_id']:012d}.png")
        # the rule is exact (polygons only where they rasterise back to the mask), so IoU = 1 for both kinds
        assert np.array_equal(mask, id_map == ann["id"] % 1000), (ann["id"], kinds)
        assert np.array_equal(mask, decode_rle(entities[ann["id"]]["segmentation"]))
        assert np.array_equal(mask, segmentation_to_mask(seg, image["height"], image["width"], "test"))
    assert kinds == {"polygons", "[RLE]"}  # the tiny split has things with holes (rings, hollow shapes)


def test_bare_rle_dict_is_what_refer_py_cannot_read():
    mask = np.zeros((8, 9), bool)
    mask[2:5, 3:7] = True
    image = {"height": 8, "width": 9}
    with pytest.raises(KeyError):
        refer_get_mask({"segmentation": encode_rle(mask)}, image)
    assert np.array_equal(refer_get_mask({"segmentation": [encode_rle(mask)]}, image), mask)
    assert np.array_equal(refer_get_mask({"segmentation": exact_polygons(mask)}, image), mask)


@pytest.mark.parametrize("split", SPLITS)
def test_refcoco_reader_and_res_rec_score_panoptic_truth_as_perfect(tiny_shapesworld, split, tmp_path):
    root = tiny_shapesworld
    ds = RefCocoDataset(RefCocoDataset.Config(root=str(root / f"refcoco_{split}"), split=split,
                                              image_dir=str(root / split)))
    res, rec = [], []
    for sample in ds:
        id_map = load_id_map_png(root / "annotations" / f"panoptic_{split}" / f"{int(sample['image_id']):012d}.png")
        for k, ann_id in enumerate(sample["masks"].ids.tolist()):
            assert np.array_equal(sample["masks"].masks[k], id_map == ann_id % 1000)
        for r in sample["refs"]:
            res.append({"sent_id": r["sent_id"], "segmentation": encode_rle(id_map == r["ann_id"] % 1000)})
            rec.append({"sent_id": r["sent_id"], "bbox": r["bbox"]})
    assert res
    (tmp_path / "res.json").write_text(json.dumps(res))
    (tmp_path / "rec.json").write_text(json.dumps(rec))
    gt = str(root / f"refcoco_{split}")
    metrics = RESEvaluator(RESEvaluator.Config(split=split)).score(gt, str(tmp_path / "res.json"))
    assert metrics["cIoU"] == metrics["gIoU"] == 1.0
    assert RECEvaluator(RECEvaluator.Config(split=split)).score(gt, str(tmp_path / "rec.json"))["Acc@0.5"] == 1.0


def test_a_split_of_the_old_format_is_a_different_split(tmp_path):
    meta = provenance(images=2, seed=1, size="96x96", split="val")
    (tmp_path / "shapesworld_val.json").write_text(json.dumps({**meta, "version": "1"}))
    assert VERSION != "1"
    assert split_state(tmp_path, "val", meta)[0] == "different"


# ---- segmentation_to_mask: every official variant, and malformed ones refused ----------------------

H, W = 6, 7
A = np.zeros((H, W), bool)
A[1:4, 1:3] = True
B = np.zeros((H, W), bool)
B[3:6, 4:7] = True


C = A.copy()
C[0, 0] = True  # its runs start with ones: an empty run of zeros first


def _uncompressed(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE: run lengths over the column-major pixels, the first run of zeros."""
    flat = mask.T.ravel().astype(np.int8)
    runs = np.diff([0, *(np.flatnonzero(np.diff(flat)) + 1), flat.size]).tolist()
    return {"size": list(mask.shape), "counts": runs if flat[0] == 0 else [0, *runs]}


@pytest.mark.parametrize("segm, expected", [
    (encode_rle(A), A),
    ({**encode_rle(A), "counts": encode_rle(A)["counts"].encode()}, A),  # bytes counts, as pycocotools gives
    (_uncompressed(A), A),
    (_uncompressed(C), C),
    ([encode_rle(A)], A),
    ([encode_rle(A), encode_rle(B)], A | B),
    ([_uncompressed(A), encode_rle(B)], A | B),
    ([[1, 1, 3, 1, 3, 4, 1, 4]], A),  # pixel k spans [k, k + 1]
    ([[1, 1, 3, 1, 3, 4, 1, 4], [4, 3, 7, 3, 7, 6, 4, 6]], A | B),
    ([], np.zeros((H, W), bool)),
], ids=["rle", "rle-bytes", "uncompressed", "uncompressed-ones-first", "[rle]", "[rle,rle]", "[mixed-rles]",
        "polygon", "polygons", "empty"])
def test_segmentation_to_mask_reads_every_variant(segm, expected):
    assert np.array_equal(segmentation_to_mask(segm, H, W, "test"), expected)


@pytest.mark.parametrize("segm, message", [
    ([encode_rle(A), [1, 1, 3, 1, 3, 4]], r"ann 7: segmentation mixes RLEs and a list .*item 1"),
    ([[1, 1, 3, 1, 3, 4], encode_rle(A)], r"ann 7: segmentation mixes RLEs and a list .*item 0"),
    ([encode_rle(A), {"size": [H, W + 1], "counts": "0"}], r"ann 7 RLE 1: mask is 8x6 \(WxH\) but the image is 7x6"),
    ([{"size": [H, W], "counts": [1, 2]}], r"ann 7 RLE 0: RLE run lengths sum to 3"),
    ([{"size": [H, W]}], r"ann 7 RLE 0: RLE counts is null"),
    ([{"size": [100000, 100000], "counts": "0"}], r"ann 7 RLE 0: RLE: 100000x100000 = 10,000,000,000 pixels exceeds"),
    ([[1, 1, 3]], r"ann 7: polygon 0 is a list"),
    ([[[1, 1, 3, 1, 3, 4]]], r"ann 7: polygon 0 is a list"),
    ("counts", r"ann 7: segmentation is a str"),
    (None, r"ann 7: segmentation is null"),
], ids=["rle-then-polygon", "polygon-then-rle", "wrong-size", "short-counts", "no-counts", "huge", "short-polygon",
        "nested", "str", "null"])
def test_segmentation_to_mask_refuses_malformed(segm, message):
    with pytest.raises(InputError, match=message):
        segmentation_to_mask(segm, H, W, "instances.json ann 7")


def test_exact_polygons_round_trip_or_give_up():
    yy, xx = np.mgrid[:40, :50]
    disk = (yy - 20) ** 2 + (xx - 24) ** 2 < 15**2
    polygons = exact_polygons(disk)
    assert polygons and np.array_equal(segmentation_to_mask(polygons, 40, 50, "disk"), disk)
    assert exact_polygons(disk & ~((yy - 20) ** 2 + (xx - 24) ** 2 < 5**2)) is None  # a ring: a hole
    assert exact_polygons(np.zeros((4, 4), bool)) is None
    corners = np.eye(4, dtype=bool)  # pixels touching only at corners
    assert np.array_equal(segmentation_to_mask(exact_polygons(corners), 4, 4, "eye"), corners)
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 20, 2))
        mask = rng.random((h, w)) < rng.random()
        polygons = exact_polygons(mask)
        if polygons is not None:
            assert np.array_equal(segmentation_to_mask(polygons, h, w, "random"), mask)
            assert all(0 <= v <= (w, h)[i % 2] for p in polygons for i, v in enumerate(p))
