"""APe equals pycocotools' own COCOeval on an independently made class-agnostic conversion."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from esgkit.core.errors import ConfigError, InputError
from esgkit.core.types import decode_rle, encode_rle
from esgkit.evaluation.entity import EntityEvaluator, low_res_size


def _perturbed(gt: dict, seed: int = 0) -> list[dict]:
    """Shifted, dropped and spurious masks with distinct random scores and the original categories."""
    rng = np.random.default_rng(seed)
    preds = []
    sizes = {i["id"]: (i["height"], i["width"]) for i in gt["images"]}
    for a in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        m = np.roll(decode_rle(a["segmentation"]), tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
        preds.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
                      "segmentation": encode_rle(m)})
    for image_id, (h, w) in sizes.items():
        m = np.zeros((h, w), bool)
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        m[y:y + 20, x:x + 20] = True
        preds.append({"image_id": image_id, "category_id": 3, "score": float(rng.random()), "segmentation": encode_rle(m)})
    return preds


def _reference_ape(gt: dict, preds: list[dict]) -> list[float]:
    """The class-agnostic conversion done by hand, then stock COCOeval."""
    gt = json.loads(json.dumps(gt))
    for a in gt["annotations"]:
        a["category_id"] = 1
    gt["categories"] = [{"id": 1, "name": "entity"}]
    dets = []
    for image_id in {p["image_id"] for p in preds}:
        mine = sorted((p for p in preds if p["image_id"] == image_id), key=lambda p: -p["score"])
        taken = None
        for p in mine:  # highest score first keeps its pixels
            m = decode_rle(p["segmentation"])
            taken = np.zeros_like(m) if taken is None else taken
            m = m & ~taken
            taken |= m
            if m.any():
                rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
                dets.append({"image_id": image_id, "category_id": 1, "score": p["score"], "segmentation": rle})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


@pytest.fixture(scope="module")
def entity_gt(sw_root):
    return sw_root / "annotations/entityseg_val.json"


def test_ape_equals_cocoeval_on_the_class_agnostic_conversion(entity_gt, tmp_path):
    gt = json.loads(entity_gt.read_text())
    preds = _perturbed(gt)
    (tmp_path / "p.json").write_text(json.dumps(preds))
    m = EntityEvaluator(EntityEvaluator.Config()).score(str(entity_gt), str(tmp_path / "p.json"))
    ref = _reference_ape(gt, preds)
    assert 0.05 < m["APe"] < 0.95  # a real, non-degenerate number
    assert m["APe"] == pytest.approx(ref[0], abs=1e-12)
    assert m["AP50"] == pytest.approx(ref[1], abs=1e-12)
    assert m["AP75"] == pytest.approx(ref[2], abs=1e-12)


def test_ground_truth_scores_one_empty_scores_zero_and_l_variant(entity_gt, tmp_path):
    gt = json.loads(entity_gt.read_text())
    oracle = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
               "segmentation": a["segmentation"]} for a in gt["annotations"]]
    (tmp_path / "o.json").write_text(json.dumps(oracle))
    (tmp_path / "e.json").write_text("[]")
    ev = EntityEvaluator(EntityEvaluator.Config(variants="H,L"))
    m = ev.score(str(entity_gt), str(tmp_path / "o.json"))
    for k in ("APe", "AP50", "AP75", "APe_L", "AP50_L", "AP75_L"):
        assert m[k] == pytest.approx(1.0), (k, m)
    m = ev.score(str(entity_gt), str(tmp_path / "e.json"))
    assert all(v == 0.0 for v in m.values())


def test_low_res_size_follows_800_by_1333():
    assert low_res_size(480, 640) == (800, 1067)
    assert low_res_size(1000, 4000) == (333, 1333)
    assert low_res_size(4096, 4096) == (800, 800)


def test_bad_input(entity_gt, tmp_path):
    ev = EntityEvaluator(EntityEvaluator.Config())
    (tmp_path / "u.json").write_text(json.dumps([{"image_id": 999, "score": 1, "segmentation": encode_rle(np.ones((2, 2), bool))}]))
    with pytest.raises(InputError, match="u.json: entry 0 names image_id 999"):
        ev.score(str(entity_gt), str(tmp_path / "u.json"))
    (tmp_path / "s.json").write_text(json.dumps([{"image_id": 1, "score": 1, "segmentation": encode_rle(np.ones((2, 2), bool))}]))
    with pytest.raises(InputError, match="s.json entry 0: mask is 2x2 .* image is 192x160"):
        ev.score(str(entity_gt), str(tmp_path / "s.json"))
    with pytest.raises(InputError, match="nope.json: no such file"):
        ev.score(str(tmp_path / "nope.json"), str(tmp_path / "s.json"))
    with pytest.raises(ConfigError, match="variants"):
        EntityEvaluator(EntityEvaluator.Config(variants="X"))


def test_subset_ap_scores_the_named_entities_alone_and_ignores_the_others(entity_gt, tmp_path):
    gt = json.loads(entity_gt.read_text())
    thin = {c["id"] for c in gt["categories"] if c["supercategory"] == "thin"}
    assert any(a["category_id"] in thin for a in gt["annotations"]), "the fixture should hold wires or fences"
    image = next(i for i in gt["images"])
    box = np.zeros((image["height"], image["width"]), bool)
    box[:6, :6] = True

    def score(keep, extra=()):
        preds = [{"image_id": a["image_id"], "score": 0.5, "segmentation": a["segmentation"]}
                 for a in gt["annotations"] if keep(a)] + list(extra)
        (tmp_path / "p.json").write_text(json.dumps(preds))
        return EntityEvaluator(EntityEvaluator.Config(subset="thin")).score(str(entity_gt), str(tmp_path / "p.json"))

    every = score(lambda a: True)
    assert every["APe_subset"] == pytest.approx(1.0)  # detections of the other entities are ignored, not false
    assert every["APe"] == pytest.approx(1.0)
    others = score(lambda a: a["category_id"] not in thin)
    assert others["APe_subset"] == 0.0 and others["APe"] < 1.0
    spurious = score(lambda a: True, [{"image_id": image["id"], "score": 0.9, "segmentation": encode_rle(box)}])
    assert spurious["APe_subset"] < 1.0  # a detection matching nothing stays a false positive
    with pytest.raises(ConfigError, match="subset names \\['wires'\\].*known: .*thin"):
        EntityEvaluator(EntityEvaluator.Config(subset="wires")).score(str(entity_gt), str(tmp_path / "p.json"))
