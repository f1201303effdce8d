"""RES (cIoU, gIoU, Prec@X) and REC (Acc@0.5) on hand-computed cases, and bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from esgkit.core.errors import InputError
from esgkit.core.types import encode_rle
from esgkit.evaluation.referring import RECEvaluator, RESEvaluator, box_iou

TARGET = np.zeros((4, 4), bool)
TARGET[:2, :2] = True  # ann 101: the top-left 2×2


@pytest.fixture
def refs(tmp_path):
    instances = {"images": [{"id": 5, "file_name": "x.jpg", "height": 4, "width": 4}],
                 "annotations": [
                     {"id": 101, "image_id": 5, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
                      "segmentation": encode_rle(TARGET)},
                     {"id": 102, "image_id": 5, "category_id": 1, "bbox": [2, 2, 1, 1], "area": 0, "iscrowd": 0,
                      "segmentation": encode_rle(np.zeros((4, 4), bool))}],  # an empty GT mask
                 "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    refs = [{"ref_id": 0, "ann_id": 101, "image_id": 5, "split": "val", "category_id": 1,
             "sentences": [{"sent_id": 10, "sent": "the left one"}, {"sent_id": 11, "sent": "top left"}]},
            {"ref_id": 1, "ann_id": 102, "image_id": 5, "split": "val", "category_id": 1,
             "sentences": [{"sent_id": 12, "sent": "nothing"}]},
            {"ref_id": 2, "ann_id": 101, "image_id": 5, "split": "train", "category_id": 1,
             "sentences": [{"sent_id": 13, "sent": "train sentence"}]}]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return tmp_path / "refs(unc).p"


def _write(path, preds):
    path.write_text(json.dumps(preds))
    return str(path)


def test_res_hand_computed(refs, tmp_path):
    half = np.zeros((4, 4), bool)
    half[1, :] = True
    half[0, 3] = True  # 2 px inside the target, 3 outside: I = 2, U = 7
    preds = [{"sent_id": 10, "segmentation": encode_rle(TARGET)},  # I 4, U 4
             {"sent_id": 11, "segmentation": encode_rle(half)},  # I 2, U 7
             {"sent_id": 12, "segmentation": encode_rle(np.zeros((4, 4), bool))}]  # empty union → IoU 1
    m = RESEvaluator(RESEvaluator.Config(split="val")).score(str(refs), _write(tmp_path / "p.json", preds))
    assert m["cIoU"] == pytest.approx((4 + 2 + 0) / (4 + 7 + 0))
    assert m["gIoU"] == pytest.approx((1 + 2 / 7 + 1) / 3)
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert m[f"Prec@{t}"] == pytest.approx(2 / 3)


def test_res_ground_truth_and_empty(refs, tmp_path):
    ev = RESEvaluator(RESEvaluator.Config())  # every split
    gt = [{"sent_id": s, "segmentation": encode_rle(TARGET)} for s in (10, 11, 13)]
    m = ev.score(str(refs), _write(tmp_path / "gt.json", gt))  # 12 has no prediction: empty vs empty → 1
    assert all(v == 1.0 for v in m.values()), m
    m = ev.score(str(refs.parent), _write(tmp_path / "none.json", []))  # a folder works too
    assert m["cIoU"] == 0.0 and m["gIoU"] == pytest.approx(1 / 4) and m["Prec@0.5"] == pytest.approx(1 / 4)


def test_rec_hand_computed(refs, tmp_path):
    preds = [{"sent_id": 10, "bbox": [0, 0, 2, 1]},  # IoU 0.5 → hit
             {"sent_id": 11, "bbox": [1, 1, 2, 2]}]  # IoU 1/7 → miss; 12 missing → miss
    m = RECEvaluator(RECEvaluator.Config(split="val")).score(str(refs), _write(tmp_path / "b.json", preds))
    assert m == {"Acc@0.5": pytest.approx(1 / 3)}
    assert box_iou([0, 0, 2, 2], [1, 1, 2, 2]) == pytest.approx(1 / 7)
    m = RECEvaluator(RECEvaluator.Config(split="val")).score(str(refs), _write(tmp_path / "e.json", []))
    assert m == {"Acc@0.5": 0.0}


@pytest.mark.parametrize("preds, message", [
    ([{"sent_id": 99, "segmentation": None}], "names sent_id 99"),
    ([{"sent_id": 13, "segmentation": None}], "names sent_id 13"),  # a train sentence, scoring val
    ([{"sent_id": 10, "segmentation": encode_rle(np.ones((3, 4), bool))}], "mask is 4x3 .* image is 4x4"),
    ([{"sent_id": 10}], "lacks 'segmentation'"),
    ({"sent_id": 10}, "expected a JSON list"),
])
def test_res_bad_predictions_are_named(refs, tmp_path, preds, message):
    with pytest.raises(InputError, match=f"bad.json.*{message}"):
        RESEvaluator(RESEvaluator.Config(split="val")).score(str(refs), _write(tmp_path / "bad.json", preds))


def test_rec_bad_box_is_named(refs, tmp_path):
    with pytest.raises(InputError, match=r"bad.json: entry 0: bbox must be \[x, y, w, h\]"):
        RECEvaluator(RECEvaluator.Config()).score(str(refs), _write(tmp_path / "bad.json", [{"sent_id": 10, "bbox": [1, 2]}]))


def test_unknown_split_and_missing_instances_are_named(refs, tmp_path):
    with pytest.raises(InputError, match="no refs of split 'testB'"):
        RESEvaluator(RESEvaluator.Config(split="testB")).score(str(refs), _write(tmp_path / "e.json", []))
    (refs.parent / "instances.json").unlink()
    with pytest.raises(InputError, match="instances.json: no such file"):
        RESEvaluator(RESEvaluator.Config()).score(str(refs), _write(tmp_path / "e.json", []))


def test_refs_pickle_with_code_is_refused(refs, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    refs.write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(InputError, match=r"refs\(unc\)\.p: refused to load: it holds a (__builtin__|builtins).print"):
        RESEvaluator(RESEvaluator.Config()).score(str(refs), _write(tmp_path / "e.json", []))
