"""Training the tiny SAM with point prompts."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from esgkit.core import get_registry
from esgkit.core.errors import ConfigError
from esgkit.training.tasks.sam import dice_per_mask, mask_iou, sigmoid_focal_loss
from esgkit.training.run import make_task, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from esgkit.datasets.shapesworld import generate

    root = tmp_path_factory.mktemp("shapesworld")
    generate(root, images=2, seed=0, size=(96, 80), split="train")
    return root


def config(**train):
    return OmegaConf.create({"pipeline": {"name": "colormap"}, "segmenter": {"name": "sam", "points_per_side": 4},
                             "colorizer": {"name": "random"},
                             "train": {"batch_size": 2, "steps": 2, "log_every": 1, "prompts_per_image": 4, **train}})


def test_points_fall_inside_their_entity(data):
    task, _ = make_task(config(), data)
    ds = task.train_dataset()
    sample = ds[0]
    assert sample["image"].shape == (3, 256, 256)
    assert sample["targets"].shape[1:] == (256, 256) and not sample["targets"][:, 220:].any()  # 96x80 → 256x213, padded
    torch.manual_seed(0)
    batch = task.collate([ds[0], ds[1]])
    for pts, masks in zip(batch["points"], batch["targets"]):
        assert len(pts) == len(masks) == 4
        for (x, y), m in zip(pts.long().tolist(), masks):
            assert m[y, x]


def test_loss_terms():
    logits = torch.tensor([[[[10.0, -10.0], [-10.0, -10.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(sigmoid_focal_loss(logits, target)) < 1e-6
    assert float(dice_per_mask(logits, target)) < 1e-3
    assert float(mask_iou(logits, target)) == 1.0
    assert float(mask_iou(-logits, target)) == 0.0


def test_a_few_steps_reduce_the_loss(data):
    task, _ = make_task(config(), data)
    torch.manual_seed(0)
    model = task.build_model().train()
    ds = task.train_dataset()
    batch = task.collate([ds[0], ds[1]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(8):
        losses = task.losses(model, batch)
        total = losses["mask"] + losses["iou"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.9 * totals[0], totals


def test_trained_weights_load_into_the_sam_segmenter(data, tmp_path):
    summary = train(config(), data, tmp_path / "run", progress=False)
    weights = tmp_path / "run" / "sam.safetensors"
    assert summary["step"] == 2 and weights.is_file()
    seg = get_registry().build("segmenter", {"name": "sam", "checkpoint": str(weights), "points_per_side": 4})
    from safetensors.torch import load_file

    state = load_file(str(weights))
    assert torch.equal(seg.sam.mask_decoder.iou_token.weight, state["mask_decoder.iou_token.weight"])


def test_only_the_tiny_sam_trains(data):
    cfg = config()
    cfg.segmenter.model_type = "vit_b"
    with pytest.raises(ConfigError, match="model_type"):
        make_task(cfg, data)
