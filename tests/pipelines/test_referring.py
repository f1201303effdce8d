"""The referring pipeline (PBREC-MT tiny): one expression on one image, the files it writes, its
checkpoint (text encoder left out when pretrained), predictions for ``esgkit eval``, and training
through ``esgkit train`` then scoring with ``esgkit eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esgkit.core import EntityMasks, build_pipeline, load_config
from esgkit.core.errors import CheckpointError, InputError
from esgkit.core.types import decode_rle

TINY = ["referrer.backbone=mobilenetv2_050", "referrer.stride=16", "referrer.image_size=64", "referrer.dim=32",
        "referrer.layers=1", "referrer.heads=2", "referrer.ffn_dim=64", "pipeline.checkpoint=''"]


@pytest.fixture(scope="module")
def scene():
    image = np.full((48, 80, 3), 90, np.uint8)
    image[8:30, 6:30] = (220, 30, 30)
    image[20:44, 50:76] = (30, 30, 220)
    masks = np.zeros((2, 48, 80), bool)
    masks[0, 8:30, 6:30] = True
    masks[1, 20:44, 50:76] = True
    return image, EntityMasks(masks, ids=np.array([3, 5]))


def _pipeline(*overrides: str):
    with pytest.warns(UserWarning, match="random weights"):
        return build_pipeline(load_config("pbrec_mt_tiny", [*TINY, *overrides]))


def test_one_expression_gives_a_box_a_mask_and_files(scene, tmp_path):
    image, masks = scene
    pipeline = _pipeline()
    result = pipeline.run(image, expression="  the red square\n", masks=masks, image_id="scene")
    assert result.expression == "the red square"
    r = result.referral
    assert r.box_entity in (3, 5) and r.mask_entity in (3, 5)
    assert np.array_equal(r.mask, masks.masks[[3, 5].index(r.mask_entity)])
    paths = pipeline.write(result, str(tmp_path), image)
    doc = json.loads((tmp_path / "referral.json").read_text())
    assert doc["expression"] == "the red square" and doc["proposals"] == 2 and len(doc["box"]) == 4
    assert np.array_equal(decode_rle(doc["segmentation"]), r.mask)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["mask.png", "overlay.png", "referral.json"]
    from esgkit.core.io import load_image

    assert load_image(tmp_path / "overlay.png").shape == image.shape
    header, rule, row = pipeline.summary(result).splitlines()
    assert header.split() == ["expression", "box", "x,", "y,", "w,", "h", "score", "mask", "area"]
    assert set(rule) == {"-"}
    assert row.startswith("the red square  ") and row.endswith(f"{int(r.mask.sum())} px ({r.mask.mean():.1%})")


def test_cli_run_prints_expression_box_score_and_mask_area(scene, tmp_path, capsys):
    from esgkit.core.cli import main
    from esgkit.core.io import save_id_map_png, save_image

    image, masks = scene
    save_image(tmp_path / "scene.png", image)
    save_id_map_png(tmp_path / "masks.png", masks.to_id_map())
    assert main(["run", "pbrec_mt_tiny", "--image", str(tmp_path / "scene.png"), "--masks", str(tmp_path / "masks.png"),
                 "--expression", "the blue square", "--out", str(tmp_path / "out"), *TINY]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("expression") and lines[2].startswith("the blue square  ") and "px (" in lines[2]
    assert [line.startswith("wrote ") for line in lines[3:]] == [True] * 3


def test_bad_inputs_are_named(scene):
    image, masks = scene
    pipeline = _pipeline()
    with pytest.raises(InputError, match="--expression"):
        pipeline.run(image, masks=masks)
    with pytest.raises(InputError, match="referring expression is empty"):
        pipeline.run(image, expression="  ", masks=masks)
    with pytest.raises(InputError, match="no caption.*--expression"):
        pipeline.run(image, expression="the red square", caption="a red square", masks=masks)
    with pytest.warns(UserWarning, match="found no entity"):
        empty = pipeline.run(image, expression="the red square", masks=EntityMasks.empty(48, 80))
    assert not empty.referral.mask.any() and empty.referral.box == (0.0, 0.0, 0.0, 0.0)


def test_checkpoint_leaves_a_pretrained_text_encoder_out(scene, tmp_path):
    from safetensors.torch import save_file

    image, masks = scene
    torch.manual_seed(1)
    trained = _pipeline()
    state = {f"referrer.{k}": v.contiguous() for k, v in trained.referrer.state_dict().items()}
    save_file(state, str(tmp_path / "referring.safetensors"))
    loaded = build_pipeline(load_config("pbrec_mt_tiny", [*TINY, f"pipeline.checkpoint={tmp_path}/referring.safetensors"]))
    for key, value in trained.referrer.state_dict().items():
        assert torch.equal(value, loaded.referrer.state_dict()[key]), key
    a = trained.run(image, expression="the blue square", masks=masks).referral
    b = loaded.run(image, expression="the blue square", masks=masks).referral
    assert a.box == b.box and a.score == pytest.approx(b.score)
    # a text encoder without weights of its own must be in the file
    with pytest.raises(CheckpointError, match="text_encoder"):
        build_pipeline(load_config("pbrec_mt_tiny", [*TINY, "text_encoder={name: hashed}",
                                                     f"pipeline.checkpoint={tmp_path}/referring.safetensors"]))


def test_predictions_are_scored_by_res_and_rec(tiny_shapesworld, tmp_path):
    from esgkit.datasets.shapesworld import ShapesWorldDataset
    from esgkit.evaluation.run import score_predictions

    pipeline = _pipeline()
    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(tiny_shapesworld), split="val"))
    predictions = pipeline.predict(dataset, str(tmp_path), progress=False)
    assert [p.evaluator for p in predictions] == ["res", "rec"]
    metrics = score_predictions(predictions)
    assert {"cIoU", "gIoU", "Prec@0.5", "Acc@0.5"} <= set(metrics)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    sentences = sum(len(dataset[i]["refs"]) for i in range(len(dataset)))
    assert len(json.loads((tmp_path / "res_pred.json").read_text())) == sentences
    assert pipeline.predict(dataset, str(tmp_path / "none"), skip=("res", "rec")) == []


def test_train_then_eval_from_the_command_line(tiny_shapesworld, tmp_path, cli):
    run = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("pipeline.")]
    result = cli("train", "pbrec_mt_tiny", "--data", str(tiny_shapesworld), "--out", str(run), *tiny,
                 "train.steps=3", "train.batch_size=2", "train.log_every=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "referring.safetensors").is_file()
    from safetensors.torch import load_file

    keys = load_file(str(run / "referring.safetensors"))
    assert keys and all(k.startswith("referrer.") for k in keys)  # the frozen MiniLM is not saved
    out = tmp_path / "metrics.json"
    result = cli("eval", "pbrec_mt_tiny", "--checkpoint", str(run), "--data", str(tiny_shapesworld), "--split", "val",
                 "--out", str(out), *tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    flat = metrics.get("metrics", metrics)
    assert "Acc@0.5" in flat and "cIoU" in flat, metrics
    plus = tmp_path / "plus.json"  # the RefCOCO+-style expressions of the same split
    result = cli("eval", "pbrec_mt_tiny", "--checkpoint", str(run), "--data", str(tiny_shapesworld), "--split", "val",
                 "--dataset-option", "refs=refcoco+", "--out", str(plus), *tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    refs = json.loads((tmp_path / "plus_predictions" / "res_pred.json").read_text())
    plus_refs = json.loads((tiny_shapesworld / "refcoco+_val" / "refs(unc).json").read_text())
    assert {r["sent_id"] for r in refs} == {s["sent_id"] for r in plus_refs for s in r["sentences"]}


def test_profile_counts_each_part(cli):
    from esgkit.pipelines.referring import profile_referring

    rows = {r.part: r for r in profile_referring(load_config("pbrec_mt_tiny", TINY[:-1]), tokens=12)}
    assert set(rows) == {"visual backbone", "text encoder", "fusion + heads", "all"}
    assert all(r.params_m > 0 and r.gflops > 0 for r in rows.values())
    assert rows["all"].gflops == pytest.approx(sum(r.gflops for k, r in rows.items() if k != "all"))
    assert rows["text encoder"].params_m == pytest.approx(22.7, abs=0.2)  # all-MiniLM-L6-v2
    result = cli("profile", "pbrec_mt_tiny", "--tokens", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fusion + heads" in result.stdout and "003" in result.stdout
