"""`esgkit eval` for any pipeline: a pipeline's predictions and the dataset's cut-down ground truth,
scored by the registered evaluators; the noun-extraction evaluator; the datasets' ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from esgkit.core import InputError, build_pipeline, get_registry
from esgkit.core.cli import main
from esgkit.evaluation.run import evaluate


def _dataset(root, name="shapesworld"):
    return get_registry().build("dataset", {"name": name, "root": str(root), "split": "val"}, key="dataset")


def test_ground_truth_masks_through_the_colormap_pipeline_score_ape_one(sw_root, tmp_path):
    metrics = evaluate(build_pipeline("colormap"), _dataset(sw_root), tmp_path, max_images=3, progress=False)
    assert metrics["images"] == 3.0
    assert metrics["APe"] == pytest.approx(1.0) and metrics["APe_L"] == pytest.approx(1.0)
    gt = json.loads((tmp_path / "entityseg_val.json").read_text())
    assert len(gt["images"]) == 3  # the ground truth is cut down to the evaluated images


def test_esgkit_eval_any_pipeline_writes_metrics_and_rescorable_files(sw_root, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", "colormap", "--data", str(sw_root), "--out", str(out), "--max-images", "2",
                 "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert record["metrics"]["APe"] == pytest.approx(1.0) and record["split"] == "val"
    pred_dir = tmp_path / "m_predictions"
    assert main(["score", "entity", "--gt", str(pred_dir / "entityseg_val.json"),
                 "--pred", str(pred_dir / "entity_pred.json")]) == 0
    assert "APe" in capsys.readouterr().out


def test_eval_checkpoint_replaces_the_pipelines_weights_key(sw_root, tmp_path, capsys):
    # colormap's weights are segmenter.checkpoint; ground_truth has none, so the key names the problem
    assert main(["eval", "colormap", "--data", str(sw_root), "--out", str(tmp_path / "m.json"),
                 "--checkpoint", str(tmp_path)]) == 2
    assert "no checkpoint of `esgkit train`" in capsys.readouterr().err
    (tmp_path / "w.safetensors").write_bytes(b"")
    assert main(["eval", "colormap", "--data", str(sw_root), "--out", str(tmp_path / "m.json"),
                 "--checkpoint", str(tmp_path / "w.safetensors")]) == 2
    assert "segmenter.checkpoint: unknown key" in capsys.readouterr().err


def test_eval_names_a_missing_data_folder(tmp_path, capsys):
    assert main(["eval", "colormap", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.json")]) == 2
    assert "esgkit data shapesworld" in capsys.readouterr().err


def test_nouns_evaluator_counts_exact_spans(sw_root, tmp_path):
    from esgkit.datasets.png import read_narratives

    gt = sw_root / "annotations" / "png_coco_val.json"
    narratives = read_narratives(gt)
    first, second = narratives[0], narratives[1]
    spans = [[p.start, p.end] for p in first.caption.phrases]
    # image 1: every phrase plus one wrong span; image 2: nothing predicted; the rest: no entry
    preds = [{"image_id": first.image_id, "phrases": spans + [[0, 1]]},
             {"image_id": second.image_id, "phrases": []}]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    evaluator = get_registry().build("evaluator", {"name": "nouns"})
    got = evaluator.score(str(gt), str(tmp_path / "p.json"))
    annotated = sum(len(n.caption.phrases) for n in narratives)
    assert got["noun_recall"] == pytest.approx(len(spans) / annotated)
    assert got["noun_precision"] == pytest.approx(len(spans) / (len(spans) + 1))
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": "nope", "phrases": []}]))
    with pytest.raises(InputError, match="names image_id nope"):
        evaluator.score(str(gt), str(tmp_path / "bad.json"))
    (tmp_path / "twice.json").write_text(json.dumps(preds[:1] * 2))
    with pytest.raises(InputError, match="repeats narrative"):
        evaluator.score(str(gt), str(tmp_path / "twice.json"))


def test_datasets_cut_their_ground_truth_to_the_images(sw_root, tmp_path):
    sw = _dataset(sw_root)
    ids = [sw[1]["image_id"], sw[0]["image_id"]]
    png, options = sw.ground_truth("png", ids, str(tmp_path))
    assert sorted(str(n["image_id"]) for n in json.loads(open(png).read())) == sorted(ids)
    assert options["panoptic_json"].endswith("panoptic_val.json")
    refs, options = sw.ground_truth("res", ids, str(tmp_path))
    assert {str(r["image_id"]) for r in json.loads(open(refs).read())} <= set(ids)
    assert options["instances_json"].endswith("instances.json")
    entity = _dataset(sw_root, "entityseg")
    path, _ = entity.ground_truth("entity", ids, str(tmp_path / "e"))
    data = json.loads(open(path).read())
    assert sorted(str(i["id"]) for i in data["images"]) == sorted(ids)
    assert {str(a["image_id"]) for a in data["annotations"]} == set(ids)
    with pytest.raises(InputError, match="no ground truth for the 'png' evaluator"):
        entity.ground_truth("png", ids, str(tmp_path))
    _ = np
