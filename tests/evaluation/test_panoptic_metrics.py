"""PQ / SQ / RQ on a hand-computed case with a wrong category and a VOID region, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esgkit.core.errors import InputError
from esgkit.core.io import save_id_map_png
from esgkit.evaluation.panoptic import PanopticEvaluator

A, S = 1, 2  # a thing category and a stuff category
GT1 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 3, 3]])
GT2 = np.array([[0, 0, 5, 5], [0, 0, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]])  # 0 = VOID
CATS = [{"id": A, "name": "circle", "isthing": 1}, {"id": S, "name": "grass", "isthing": 0}]


def _panoptic(json_path, maps, segs):
    folder = json_path.with_suffix("")
    for image_id, m in maps.items():
        save_id_map_png(folder / f"{image_id}.png", m)
    json_path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 4, "width": 4} for i in maps],
        "annotations": [{"image_id": i, "file_name": f"{i}.png", "segments_info": segs[i]} for i in maps],
        "categories": CATS}))
    return str(json_path)


@pytest.fixture
def gt(tmp_path):
    return _panoptic(tmp_path / "gt.json", {1: GT1, 2: GT2}, {
        1: [{"id": 1, "category_id": A, "iscrowd": 0}, {"id": 2, "category_id": A, "iscrowd": 0},
            {"id": 3, "category_id": S, "iscrowd": 0}],
        2: [{"id": 5, "category_id": S, "iscrowd": 0}]})


def test_hand_computed_pq(gt, tmp_path):
    p1 = np.array([[10, 10, 10, 11], [10, 10, 11, 11], [12, 12, 12, 12], [12, 12, 12, 12]])
    p2 = np.array([[20, 20, 21, 21], [20, 20, 21, 21], [21, 21, 21, 21], [21, 21, 21, 21]])
    pred = _panoptic(tmp_path / "pred.json", {1: p1, 2: p2}, {
        1: [{"id": 10, "category_id": A}, {"id": 11, "category_id": S}, {"id": 12, "category_id": S}],
        2: [{"id": 20, "category_id": A}, {"id": 21, "category_id": S}]})
    m = PanopticEvaluator(PanopticEvaluator.Config()).score(gt, pred)
    # circle: segment 10 matches GT 1 with IoU 4/5 (TP); GT 2 is missed (FN) since 11 has the wrong
    #   category; 20 lies on VOID, so it is ignored, not a false positive.
    pq_a, sq_a, rq_a = 0.8 / 1.5, 0.8, 1 / 1.5
    # grass: 12 ↔ 3 and 21 ↔ 5 match with IoU 1 (TP, TP); 11 is a false positive.
    pq_s, sq_s, rq_s = 2 / 2.5, 1.0, 2 / 2.5
    assert m["PQ_th"] == pytest.approx(pq_a) and m["SQ_th"] == pytest.approx(sq_a) and m["RQ_th"] == pytest.approx(rq_a)
    assert m["PQ_st"] == pytest.approx(pq_s) and m["SQ_st"] == pytest.approx(sq_s) and m["RQ_st"] == pytest.approx(rq_s)
    assert m["PQ"] == pytest.approx((pq_a + pq_s) / 2)
    assert m["SQ"] == pytest.approx((sq_a + sq_s) / 2)
    assert m["RQ"] == pytest.approx((rq_a + rq_s) / 2)


def test_ground_truth_is_one_and_empty_is_zero(gt, tmp_path):
    ev = PanopticEvaluator(PanopticEvaluator.Config())
    assert all(v == 1.0 for v in ev.score(gt, gt).values())
    (tmp_path / "empty.json").write_text("[]")
    assert all(v == 0.0 for v in ev.score(gt, str(tmp_path / "empty.json")).values())


def test_bad_predictions_are_named(gt, tmp_path):
    ev = PanopticEvaluator(PanopticEvaluator.Config(missing="zero"))  # the files below cover image 1 only
    big = _panoptic(tmp_path / "big.json", {1: GT1}, {1: [{"id": 1, "category_id": A}, {"id": 2, "category_id": A},
                                                          {"id": 3, "category_id": S}]})
    save_id_map_png(tmp_path / "big/1.png", np.ones((5, 4), int))
    with pytest.raises(InputError, match=r"big/1.png: is 4x5 \(WxH\) but the GT of image 1 is 4x4"):
        ev.score(gt, big)
    bad_cat = _panoptic(tmp_path / "cat.json", {1: GT1}, {1: [{"id": 1, "category_id": 77}, {"id": 2, "category_id": A},
                                                              {"id": 3, "category_id": S}]})
    with pytest.raises(InputError, match="cat.json: image 1 segment 1 has unknown category_id 77"):
        ev.score(gt, bad_cat)
    other = _panoptic(tmp_path / "other.json", {9: GT1}, {9: []})
    with pytest.raises(InputError, match="other.json: image_id 9 is not in"):
        ev.score(gt, other)
    stray = _panoptic(tmp_path / "stray.json", {1: GT1}, {1: [{"id": 1, "category_id": A}]})
    with pytest.raises(InputError, match=r"stray/1.png: holds segment ids \[2, 3\]"):
        ev.score(gt, stray)


def _naive_pq(gt_map, gt_segs, pred_map, pred_segs):
    """The COCO PQ rules written out pair by pair with masks (slow, obvious)."""
    from collections import defaultdict

    void = ~np.isin(gt_map, list(gt_segs))
    st = defaultdict(lambda: [0.0, 0, 0, 0])  # iou, tp, fp, fn
    matched_p = set()
    for g, gs in gt_segs.items():
        gm = gt_map == g
        if gs.get("iscrowd") or not gm.any():
            continue
        hit = None
        for p, ps in pred_segs.items():
            pm = pred_map == p
            if ps["category_id"] != gs["category_id"]:
                continue
            iou = (gm & pm).sum() / ((gm | pm).sum() - (pm & void).sum())
            if iou > 0.5:
                hit = (p, iou)
        if hit:
            st[gs["category_id"]][0] += hit[1]
            st[gs["category_id"]][1] += 1
            matched_p.add(hit[0])
        else:
            st[gs["category_id"]][3] += 1
    for p, ps in pred_segs.items():
        pm = pred_map == p
        if p in matched_p or not pm.any():
            continue
        crowd = np.isin(gt_map, [g for g, gs in gt_segs.items() if gs.get("iscrowd") and gs["category_id"] == ps["category_id"]])
        if ((pm & void).sum() + (pm & crowd).sum()) / pm.sum() > 0.5:
            continue
        st[ps["category_id"]][2] += 1
    return {c: (v[0], v[1], v[2], v[3]) for c, v in st.items()}


def test_vectorised_pq_agrees_with_the_rules_written_out():
    from esgkit.evaluation.panoptic import pq_image

    rng = np.random.default_rng(0)
    for _ in range(40):
        gt_map = rng.integers(0, 5, (3, 3)).repeat(4, 0).repeat(4, 1)  # blocky segments, 0 = VOID
        gt_segs = {g: {"category_id": int(rng.integers(1, 3)), "iscrowd": int(rng.random() < 0.15)} for g in range(1, 5)}
        pred_map = gt_map.copy()
        noise = rng.random(gt_map.shape) < 0.2
        pred_map[noise] = rng.integers(0, 7, noise.sum())
        pred_segs = {p: {"category_id": int(rng.integers(1, 3))} for p in range(1, 7)}
        stats = {}
        pq_image(gt_map, gt_segs, pred_map, pred_segs, stats)
        got = {c: (s.iou, s.tp, s.fp, s.fn) for c, s in stats.items() if s.tp + s.fp + s.fn}
        want = {c: v for c, v in _naive_pq(gt_map, gt_segs, pred_map, pred_segs).items() if sum(v[1:])}
        assert got.keys() == want.keys()
        for c in got:
            assert got[c][1:] == want[c][1:] and got[c][0] == pytest.approx(want[c][0])
