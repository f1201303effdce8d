"""Panoptic segmentation by category prompt: the prompt's phrases, scores → panoptic map, and the
`panoptic` part of `esgkit eval` scored by the panoptic evaluator."""

import json

import numpy as np
import pytest

from esgkit.core import ConfigError, EntityMasks
from esgkit.pipelines.gella.panoptic import category_caption, panoptic_segments

CATS = [{"id": 1, "name": "circle", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]


def test_the_prompt_names_every_category_as_a_phrase():
    cap = category_caption("There might exist {}.", ["circle", "sky", "ring"])
    assert cap.text == "There might exist circle, sky, ring."
    assert [cap.text[p.start:p.end] for p in cap.phrases] == ["circle", "sky", "ring"]
    with pytest.raises(ConfigError, match="pipeline.panoptic_prompt.*no {}"):
        category_caption("There might exist", ["circle"])


def test_entities_take_their_best_category_stuff_merges_low_scores_are_void():
    masks = np.zeros((4, 2, 4), bool)
    masks[0, :, 0] = masks[1, :, 1] = masks[2, :, 2] = masks[3, :, 3] = True
    scores = np.array([[0.9, 0.8, 0.1, 0.2],    # circle
                       [0.1, 0.2, 0.7, 0.3]])   # sky
    id_map, segments = panoptic_segments(scores, EntityMasks(masks), CATS, threshold=0.5)
    # two circle entities → two thing segments; one sky entity; entity 3 (best 0.3) is void
    assert sorted(s["category_id"] for s in segments) == [1, 1, 2]
    assert id_map[0, 3] == 0 and len({id_map[0, 0], id_map[0, 1]}) == 2
    scores[1, 3] = 0.6  # a second sky entity joins the first sky segment
    id_map, segments = panoptic_segments(scores, EntityMasks(masks), CATS, threshold=0.5)
    assert id_map[0, 2] == id_map[0, 3] != 0 and sum(s["category_id"] == 2 for s in segments) == 1


def test_eval_scores_the_category_prompt_with_pq(tmp_path):
    from esgkit.core.cli import main
    from esgkit.datasets.shapesworld import generate

    root = generate(tmp_path / "sw", images=2, seed=5, size="128x128", split="val")
    out = tmp_path / "m.json"
    assert main(["eval", "gella_tiny_trained", "--data", str(root), "--out", str(out), "--skip", "nouns",
                 "--no-res", "--no-progress"]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(metrics) and 0 < metrics["PQ"] <= 1
    pred = json.loads((tmp_path / "m_predictions" / "panoptic_pred.json").read_text())
    assert len(pred["annotations"]) == 2 and (tmp_path / "m_predictions" / "panoptic_pred").is_dir()
    # open vocabulary: other words for the same categories, scored against the same ground truth
    assert main(["eval", "gella_tiny_trained", "--data", str(root), "--out", str(tmp_path / "ov.json"), "--skip",
                 "nouns", "--no-res", "--no-progress", "pipeline.panoptic_names={circle: disc, sky: heaven}"]) == 0
    assert "PQ" in json.loads((tmp_path / "ov.json").read_text())["metrics"]
