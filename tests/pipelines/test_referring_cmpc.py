"""The referring pipeline with a one-stage referrer (CMPC tiny): no segmenter runs, a mask at the
image's size, a warning when it is empty; the ``referring_masks`` task's targets and losses; training
through ``esgkit train`` and scoring one subset of the expressions with ``esgkit eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esgkit.core import build_pipeline, load_config
from esgkit.core.errors import ConfigError

TINY = ["referrer.image_size=64", "referrer.dim=16", "referrer.classifier_dim=8", "referrer.mutan_heads=2",
        "referrer.lstm_dim=8"]


def _pipeline(*overrides: str):
    with pytest.warns(UserWarning, match="random weights"):
        return build_pipeline(load_config("cmpc_tiny", [*TINY, "pipeline.checkpoint=''", *overrides]))


def test_one_stage_referral_needs_no_segmenter(monkeypatch):
    pipeline = _pipeline("referrer.threshold=0.01")
    monkeypatch.setattr(pipeline.segmenter, "segment", lambda *a, **k: pytest.fail("the segmenter ran"))
    image = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    result = pipeline.run(image, expression="the red square left of the blue circle")
    r = result.referral
    assert result.proposals is None and r.mask.shape == (48, 80) and r.mask.any() and r.box_entity is None
    with pytest.warns(UserWarning, match="found nothing.*mask is empty"):
        empty = _pipeline("referrer.threshold=0.99").run(image, expression="the red square")
    assert not empty.referral.mask.any() and empty.referral.box == (0.0, 0.0, 0.0, 0.0)


def test_mask_task_targets_and_losses(tiny_shapesworld):
    from esgkit.training.run import make_task

    config = load_config("cmpc_tiny", [*TINY, "train.batch_size=2", "train.level_weight=0.5"])
    task, _ = make_task(config, tiny_shapesworld)
    torch.manual_seed(0)
    model = task.build_model()
    data = task.train_dataset()
    sample = task.referrer.preprocess(np.zeros((96, 96, 3), np.uint8))[0]
    masks = np.zeros((1, 96, 96), bool)
    masks[0, 0:48, 0:25] = True  # 48 × 25 of 96 × 96 → 32 × 16 and a half-covered column of 64 × 64
    target = task.targets((64, 64), masks)["mask"]
    assert target.shape == (1, 64, 64) and target.dtype == torch.uint8 and sample.shape == (3, 64, 64)
    assert target[0, :32, :16].min() == 255 and target[0, 32:].max() == 0 and target[0, :, 17:].max() == 0
    assert target[0, :32, 16].tolist() == [128] * 32  # column 16 averages input columns 24 (in) and 25 (out)
    batch = task.collate([data[0], data[1]])
    assert batch["mask"].shape == (2, 64, 64) and len(batch["texts"]) == 2
    losses = task.losses(model, batch)
    assert set(losses) == {"final", "levels"} and all(v.item() > 0 for v in losses.values())
    losses["final"].backward()
    no_levels, _ = make_task(load_config("cmpc_tiny", [*TINY, "train.level_weight=0"]), tiny_shapesworld)
    no_levels.train_dataset()
    assert set(no_levels.losses(model, batch)) == {"final"}
    with pytest.raises(ConfigError, match="final_weight"):
        make_task(load_config("cmpc_tiny", [*TINY, "train.final_weight=0"]), tiny_shapesworld)


def test_train_then_eval_relational_expressions(tiny_shapesworld, tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", "cmpc_tiny", "--data", str(tiny_shapesworld), "--out", str(run), *TINY,
                 "train.steps=2", "train.batch_size=2", "train.log_every=1", "train.val_images=1", "train.eval_every=2")
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors.torch import load_file

    keys = load_file(str(run / "referring.safetensors"))
    assert keys and all(k.startswith("referrer.") for k in keys)  # the frozen MiniLM is not saved
    assert any(k.startswith("referrer.reason.") for k in keys) and any(k.startswith("referrer.exchange.") for k in keys)
    out = tmp_path / "rel.json"
    result = cli("eval", "cmpc_tiny", "--checkpoint", str(run), "--data", str(tiny_shapesworld), "--split", "val",
                 "--dataset-option", "expressions=relational", "--out", str(out), *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    preds = json.loads((tmp_path / "rel_predictions" / "res_pred.json").read_text())
    refs = json.loads((tiny_shapesworld / "refcoco_val" / "refs(unc).json").read_text())
    from esgkit.datasets.shapesworld_language import is_relational

    relational = {s["sent_id"] for r in refs for s in r["sentences"] if is_relational(s["sent"])}
    assert relational and {p["sent_id"] for p in preds} == relational
