"""The referring pipeline with QRNet / UniQRNet: the ``referring_joint`` task's targets and losses, the
learned balance weights moving under training (and absent with fixed weights), box-only QRNet taking its
masks from a segmenter, and ``esgkit eval`` scoring REC and RES of a trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esgkit.core import build_pipeline, load_config
from esgkit.core.errors import CompatibilityError, ConfigError

TINY = ["referrer.image_size=64", "referrer.backbone_options.img_size=64", "referrer.backbone_options.window_size=4",
        "referrer.backbone_options.embed_dim=8", "referrer.backbone_options.depths=[1,1,1,1]",
        "referrer.backbone_options.num_heads=[1,1,2,2]", "referrer.dim=16", "referrer.heads=2", "referrer.ffn_dim=32",
        "referrer.layers=1", "referrer.qd_rank=4"]


def _pipeline(*overrides: str):
    with pytest.warns(UserWarning, match="random weights"):
        return build_pipeline(load_config("uniqrnet_tiny", [*TINY, "pipeline.checkpoint=''", *overrides]))


def test_joint_task_targets_and_losses(tiny_shapesworld):
    from esgkit.training.run import make_task

    task, _ = make_task(load_config("uniqrnet_tiny", [*TINY, "train.batch_size=2"]), tiny_shapesworld)
    torch.manual_seed(0)
    model = task.build_model()
    data = task.train_dataset()
    masks = np.zeros((1, 96, 96), bool)
    masks[0, 24:72, 0:48] = True  # box x 0..48, y 24..72 of 96 → centre (24, 48), size 48 × 48
    targets = task.targets((64, 64), masks)
    assert torch.allclose(targets["box"], torch.tensor([[0.25, 0.5, 0.5, 0.5]]))
    assert targets["mask"].shape == (1, 64, 64) and targets["valid"].shape == (5,) and targets["valid"].all()
    batch = task.collate([data[0], data[1]])
    assert batch["box"].shape == (2, 4) and batch["mask"].shape == (2, 64, 64) and batch["valid"].shape == (2, 5)
    losses = task.losses(model, batch)
    assert set(losses) == {"box", "mask"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.referrer.log_vars.grad is not None and model.referrer.log_vars.grad.abs().min() > 0
    box_only, _ = make_task(load_config("uniqrnet_tiny", [*TINY, "referrer.mask_head=false",
                                                          "referrer.intermediate_supervision=false"]), tiny_shapesworld)
    box_only.train_dataset()
    assert set(box_only.losses(box_only.build_model(), batch)) == {"box"}
    with pytest.raises(ConfigError, match="l1_weight"):
        make_task(load_config("uniqrnet_tiny", [*TINY, "train.l1_weight=0", "train.giou_weight=0"]), tiny_shapesworld)


def test_training_learns_the_balance_weights(tiny_shapesworld, tmp_path, cli):
    """``loss_balance: uncertainty`` (the default): the log-variances move under training and are saved
    (with ``fixed`` there are none: tests/components/referrers/test_qrnet.py)."""
    run = tmp_path / "run"
    result = cli("train", "uniqrnet_tiny", "--data", str(tiny_shapesworld), "--out", str(run), *TINY,
                 "train.steps=3", "train.batch_size=2", "train.log_every=1", "train.warmup_steps=0",
                 "train.val_images=1", "train.eval_every=3")
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors.torch import load_file

    state = load_file(str(run / "referring.safetensors"))
    assert all(k.startswith("referrer.") for k in state)  # the frozen MiniLM is not saved
    assert any(k.startswith("referrer.stage_gates.") for k in state) and "referrer.mask_kernel.0.weight" in state
    assert state["referrer.log_vars"].abs().min() > 1e-4  # moved from 0 by the optimiser
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "val" and "Acc@0.5" in r and "cIoU" in r for r in rows)


@pytest.mark.filterwarnings("ignore:.*random weights")
def test_box_only_qrnet_needs_and_uses_proposals():
    with pytest.raises(CompatibilityError, match="proposals=true"):
        build_pipeline(load_config("uniqrnet_tiny", [*TINY, "pipeline.checkpoint=''", "referrer.mask_head=false"]))
    pipeline = _pipeline("referrer.mask_head=false", "pipeline.proposals=true")
    image = np.zeros((64, 64, 3), np.uint8)
    masks = np.zeros((2, 64, 64), bool)
    masks[0, :32] = masks[1, 32:] = True
    from esgkit.core import EntityMasks

    result = pipeline.run(image, expression="the red square", masks=EntityMasks(masks, ids=np.array([3, 4])))
    assert result.proposals is not None and result.referral.mask_entity in (3, 4)
    assert np.array_equal(result.referral.mask, masks[result.referral.mask_entity - 3])
