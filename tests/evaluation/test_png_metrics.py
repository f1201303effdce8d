"""PNG average recall on a hand-computed case, the official prediction rule, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esgkit.core.errors import InputError
from esgkit.core.io import save_id_map_png
from esgkit.core.types import encode_rle
from esgkit.evaluation.png import PNGEvaluator, average_recall, official_phrase_mask

# 4×4 image: segment 1 and 2 are things (2×2 each, top), segment 3 is stuff (bottom half)
ID_MAP = np.array([[1, 1, 2, 2],
                   [1, 1, 2, 2],
                   [3, 3, 3, 3],
                   [3, 3, 3, 3]])


@pytest.fixture
def gt(tmp_path):
    save_id_map_png(tmp_path / "panoptic_val/000000000001.png", ID_MAP)
    (tmp_path / "panoptic_val.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "000000000001.jpg", "height": 4, "width": 4}],
        "annotations": [{"image_id": 1, "file_name": "000000000001.png", "segments_info": [
            {"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 2}]}],
        "categories": [{"id": 1, "name": "circle", "isthing": 1}, {"id": 2, "name": "grass", "isthing": 0}],
    }))
    caption = "a circle, two circles, the grass and a circle"
    (tmp_path / "png_coco_val.json").write_text(json.dumps([{"image_id": "1", "caption": caption, "segments": [
        {"utterance": "a circle", "noun": True, "segment_ids": ["1"], "plural": False},
        {"utterance": ",", "noun": False, "segment_ids": [], "plural": False},
        {"utterance": "two circles", "noun": True, "segment_ids": ["1", "2"], "plural": True},
        {"utterance": ",", "noun": False, "segment_ids": [], "plural": False},
        {"utterance": "the grass", "noun": True, "segment_ids": ["3"], "plural": False},
        {"utterance": "and", "noun": False, "segment_ids": [], "plural": False},
        {"utterance": "a circle", "noun": True, "segment_ids": ["2"], "plural": False},
    ]}]))
    return tmp_path / "png_coco_val.json"


def _write(path, preds):
    path.write_text(json.dumps(preds))
    return str(path)


def _entry(phrase, mask, **extra):
    return {"image_id": "1", "phrase_index": phrase, "segmentation": encode_rle(np.asarray(mask, bool)), **extra}


def test_hand_computed_case(gt, tmp_path):
    p0 = ID_MAP == 1
    p0[2, :2] = True  # segment 1 plus 2 stuff pixels: I = 4, U = 6
    p1 = ID_MAP == 1  # plural GT is the union of 1 and 2 (8 px): I = 4, U = 8
    p2 = ID_MAP == 3  # the stuff phrase exactly: IoU 1
    # phrase 3 ("a circle" → segment 2) gets no prediction: IoU 0
    pred = _write(tmp_path / "pred.json", [_entry(0, p0), _entry(1, p1), _entry(2, p2)])
    m = PNGEvaluator(PNGEvaluator.Config()).score(str(gt), pred)
    ious = [4 / 6, 0.5, 1.0, 0.0]
    assert m["AR"] == pytest.approx(np.mean(ious))
    assert m["AR_th"] == pytest.approx((4 / 6 + 0.5 + 0.0) / 3)
    assert m["AR_st"] == pytest.approx(1.0)
    assert m["AR_sing"] == pytest.approx((4 / 6 + 1.0 + 0.0) / 3)
    assert m["AR_pl"] == pytest.approx(0.5)
    assert m["acc@0.5"] == pytest.approx(2 / 4)  # IoU exactly 0.5 does not count: the official rule is > 0.5


def test_ground_truth_scores_one_and_empty_scores_zero(gt, tmp_path):
    masks = [ID_MAP == 1, np.isin(ID_MAP, [1, 2]), ID_MAP == 3, ID_MAP == 2]
    m = PNGEvaluator(PNGEvaluator.Config()).score(str(gt), _write(tmp_path / "p.json", [_entry(k, v) for k, v in enumerate(masks)]))
    assert all(v == 1.0 for v in m.values()), m
    m = PNGEvaluator(PNGEvaluator.Config()).score(str(gt), _write(tmp_path / "e.json", []))
    assert all(v == 0.0 for v in m.values()), m


def test_official_convention_blurs_borders_away_from_256(tmp_path):
    """At 256² the official resizes are identities, so a perfect answer scores 1; at 640×480 its
    bilinear round trip makes the same perfect answer score < 1, while exact IoU stays 1."""
    from esgkit.evaluation.png import official_iou

    square = np.zeros((256, 256), bool)
    square[40:90, 100:180] = True
    assert official_iou(square, [square]) == pytest.approx(1.0)
    wide = np.zeros((480, 640), bool)
    wide[100:131, 200:263] = True  # an odd-sized box: borders fall between 256² pixels
    assert 0.7 < official_iou(wide, [wide]) < 0.99
    halves = [wide & (np.arange(640) < 230)[None], wide & (np.arange(640) >= 230)[None]]  # two segments
    assert official_iou(wide, halves) == pytest.approx(official_iou(wide, [wide]), abs=1e-6)


def test_unknown_convention_is_named(gt, tmp_path):
    from esgkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="convention.*one of exact, official"):
        PNGEvaluator(PNGEvaluator.Config(convention="offical"))
    masks = [ID_MAP == 1, np.isin(ID_MAP, [1, 2]), ID_MAP == 3, ID_MAP == 2]
    pred = _write(tmp_path / "p.json", [_entry(k, v) for k, v in enumerate(masks)])
    official = PNGEvaluator(PNGEvaluator.Config(convention="official")).score(str(gt), pred)
    assert 0.9 < official["AR"] < 1.0  # 4×4 → 256² → 4×4 blurs even a perfect answer
    assert PNGEvaluator(PNGEvaluator.Config()).score(str(gt), pred)["AR"] == 1.0


def test_a_prediction_file_of_some_images_is_refused_or_scored_on_those(sw_root, tmp_path):
    """esgkit eval --max-images writes predictions for a few images; scoring them against the whole
    split must not count the others as misses silently."""
    from esgkit.evaluation.oracle import oracle_predictions

    gt = sw_root / "annotations" / "png_coco_val.json"
    full = json.loads(oracle_predictions("png", gt, tmp_path / "all.json").read_text())
    first = full[0]["image_id"]
    part = _write(tmp_path / "part.json", [e for e in full if e["image_id"] == first])
    with pytest.raises(InputError, match=r"part.json covers 1 of the 6 images.*missing=skip.*missing=zero"):
        PNGEvaluator(PNGEvaluator.Config()).score(str(gt), part)
    with pytest.warns(UserWarning, match="covers 1 of the 6 images.*5 are left out"):
        assert PNGEvaluator(PNGEvaluator.Config(missing="skip")).score(str(gt), part)["AR"] == 1.0
    assert PNGEvaluator(PNGEvaluator.Config(missing="zero")).score(str(gt), part)["AR"] < 0.5


def test_average_recall_is_the_area_under_the_recall_curve():
    ious = np.random.default_rng(0).uniform(0, 1, 50)
    t = np.arange(0, 1, 1e-4)  # the official code's Riemann sum, coarser step
    area = sum(0.0001 * np.mean(ious >= x) for x in t)
    assert average_recall(list(ious)) == pytest.approx(area, abs=2e-4)
    assert np.isnan(average_recall([]))


def test_official_prediction_rule():
    props = np.zeros((3, 2, 2), bool)
    props[0, 0, 0] = props[1, 0, 1] = props[2, 1, 1] = True
    scores = np.array([0.05, 0.9, 0.3])
    assert (official_phrase_mask(props, scores, plural=False) == props[1]).all()
    assert (official_phrase_mask(props, scores, plural=True) == (props[1] | props[2])).all()
    assert not official_phrase_mask(props, np.zeros(3), plural=True).any()


@pytest.mark.parametrize("entry, message", [
    ({"image_id": "7", "phrase_index": 0}, "names image_id 7"),
    ({"image_id": "1", "phrase_index": 4}, "phrase_index 4 is unknown"),
    ({"image_id": "1", "phrase_index": 0, "size": (5, 4)}, "mask is 4x5 .* image is 4x4"),
])
def test_bad_predictions_are_named(gt, tmp_path, entry, message):
    size = entry.pop("size", (4, 4))
    entry["segmentation"] = encode_rle(np.ones(size, bool))
    pred = _write(tmp_path / "bad.json", [entry])
    with pytest.raises(InputError, match=f"bad.json.*{message}"):
        PNGEvaluator(PNGEvaluator.Config()).score(str(gt), pred)


def test_missing_and_malformed_files_are_named(gt, tmp_path):
    ev = PNGEvaluator(PNGEvaluator.Config())
    with pytest.raises(InputError, match="nothere.json: no such file"):
        ev.score(str(gt), str(tmp_path / "nothere.json"))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(InputError, match="broken.json: malformed JSON"):
        ev.score(str(gt), str(tmp_path / "broken.json"))
    (tmp_path / "png_coco_x.json").write_text("[]")
    with pytest.raises(InputError, match="panoptic JSON .*panoptic_x.json"):
        ev.score(str(tmp_path / "png_coco_x.json"), str(tmp_path / "broken.json"))
