"""The referring training task: targets of the referred entity from the referrer's own maps, the loss
switches of Table 4 (λ, soft / hard, pos_weight) and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.core import load_config
from esgkit.core.errors import ConfigError
from esgkit.training.run import make_task

TINY = ["referrer.backbone=mobilenetv2_050", "referrer.stride=16", "referrer.image_size=64", "referrer.dim=32",
        "referrer.layers=1", "referrer.heads=2", "referrer.ffn_dim=64", "referrer.text_film=true", "train.batch_size=2"]


def _task(root, *overrides):
    task, _ = make_task(load_config("pbrec_mt_tiny", [*TINY, *overrides]), root)
    return task


def test_targets_mark_the_referred_entity(tiny_shapesworld):
    task = _task(tiny_shapesworld)
    dataset = task.train_dataset()
    sample, raw = dataset[0], dataset.dataset[0]
    assert len(sample["texts"]) == len(raw["refs"]) and sample["center"].shape == (len(raw["refs"]), 4, 4)
    ids = list(raw["masks"].ids)
    for k, ref in enumerate(raw["refs"]):
        mask = raw["masks"].masks[ids.index(ref["segment_id"])]
        gy, gx = divmod(int(sample["mass"][k].argmax()), 4)
        cell = mask[gy * 24:(gy + 1) * 24, gx * 24:(gx + 1) * 24]  # 96² image, 4×4 grid: 24 px cells
        assert cell.any(), (ref["sent"], gy, gx)  # the mass-ness peak lies on the referred mask
        assert sample["center"][k].max() == 1.0


def test_loss_switches(tiny_shapesworld):
    torch.manual_seed(0)
    both = _task(tiny_shapesworld)
    model = both.build_model()
    batch = both.collate([both.train_dataset()[i] for i in range(2)])
    assert set(both.losses(model, batch)) == {"center", "mass"}
    grounding = _task(tiny_shapesworld, "train.lambda_mass=0")
    assert set(grounding.losses(model, batch)) == {"center"}
    weighted = _task(tiny_shapesworld, "train.pos_weight=10")
    assert weighted.losses(model, batch)["center"] > both.losses(model, batch)["center"]
    hard = _task(tiny_shapesworld, "train.center_targets=hard")
    targets = hard.train_dataset()[0]["center"]
    assert set(np.unique(targets.numpy()).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("override, key", [("train.center_targets=smooth", "center_targets"),
                                           ("train.lambda_center=0", "lambda_center"),
                                           ("train.pos_weight=0", "pos_weight")])
def test_bad_switches_name_their_key(tiny_shapesworld, override, key):
    overrides = [override, "train.lambda_mass=0"] if key == "lambda_center" else [override]
    with pytest.raises(ConfigError, match=key):
        _task(tiny_shapesworld, *overrides)
