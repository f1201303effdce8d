"""Training CropFormer / Mask2Former: the task's views, losses and their use with the generic Trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from esgkit.core import get_registry
from esgkit.core.errors import ConfigError, InputError
from esgkit.training.tasks.cropformer import CropFormerTask
from esgkit.training.run import make_task, train

TINY = {"short_side": 64, "max_long_side": 96, "num_queries": 12}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from esgkit.datasets.shapesworld import generate

    root = tmp_path_factory.mktemp("shapesworld")
    generate(root, images=3, seed=0, size=(96, 80), split="train")
    generate(root, images=1, seed=1, size=(96, 80), split="val")
    return root


def config(name: str = "cropformer", **train):
    return OmegaConf.create({"pipeline": {"name": "colormap"}, "segmenter": {"name": name, **TINY},
                             "colorizer": {"name": "random"},
                             "train": {"batch_size": 2, "steps": 4, "num_points": 0, "log_every": 2, **train}})


@pytest.mark.parametrize("name,views,batch_level", [("cropformer", 2, True), ("mask2former", 1, False)])
def test_batch_holds_the_training_views_and_losses_have_both_levels(data, name, views, batch_level):
    task, _ = make_task(config(name), data)
    dataset = task.train_dataset()
    sample = dataset[0]
    n = sample["targets"].shape[0]
    assert sample["views"].dtype == torch.uint8 and sample["targets"].dtype == torch.bool
    assert sample["views"].shape[0] == (5 if name == "cropformer" else 1)  # full + all four crops, cached
    assert n > 0 and sample["targets"].shape[1] == sample["views"].shape[0]
    if views > 1:  # the crops are zoomed ≈1.43×: an entity covers more input pixels in a crop than in the full view
        area = sample["targets"].flatten(2).sum(-1).float()  # (N, 5)
        assert area[:, 1:].max() > 1.5 * area[:, 0].max() * 0.7 ** 2
    torch.manual_seed(0)
    batch = task.collate([dataset[0], dataset[1]])
    assert batch["views"].shape[:2] == (2, views)
    assert batch["views"].shape[-1] % 32 == 0 and batch["views"].shape[-2] % 32 == 0
    assert [t.shape[:2] for t in batch["targets"]] == [(n, views), (dataset[1]["targets"].shape[0], views)]
    model = task.build_model()
    losses = task.losses(model, batch)
    expected = {"image_class", "image_mask", "image_dice"} | ({"batch_class", "batch_mask", "batch_dice"} if batch_level else set())
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_image_level_weight_scales_only_the_image_level(data):
    batch_losses = []
    for weight in (0.5, 1.0):
        task, _ = make_task(config(image_level_weight=weight), data)
        torch.manual_seed(0)
        model = task.build_model()
        torch.manual_seed(1)
        batch = task.collate([task.train_dataset()[0]])
        batch_losses.append({k: float(v.detach()) for k, v in task.losses(model, batch).items()})
    half, full = batch_losses
    assert half["image_mask"] == pytest.approx(0.5 * full["image_mask"], rel=1e-5)
    assert half["batch_mask"] == pytest.approx(full["batch_mask"], rel=1e-5)


@pytest.mark.parametrize("name", ["cropformer", "mask2former"])
def test_a_few_steps_reduce_the_loss(data, name):
    task, _ = make_task(config(name, flip=False), data)
    torch.manual_seed(0)
    model = task.build_model()
    ds = task.train_dataset()
    batch = task.collate([ds[0], ds[1]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(8):
        total = sum(task.losses(model, batch).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert totals[-1] < 0.8 * totals[0], totals


def test_trainer_runs_the_task_and_its_weights_load_into_the_segmenter(data, tmp_path):
    cfg = config("cropformer", val_split="val", val_images=1, checkpoint_every=2)
    summary = train(cfg, data, tmp_path / "run", progress=False)
    assert summary["step"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "split" not in r]
    assert [r["step"] for r in train_rows] == [2, 4] and all("batch_dice" in r for r in train_rows)
    val = [r for r in rows if r.get("split") == "val"]
    assert val and {"APe", "APe_L"} <= set(val[-1])
    assert (tmp_path / "run" / "loss.png").is_file()
    weights = tmp_path / "run" / "cropformer.safetensors"
    seg = get_registry().build("segmenter", {"name": "cropformer", **TINY, "checkpoint": str(weights)})
    from safetensors.torch import load_file

    state = load_file(str(weights))
    assert torch.equal(seg.model.query_feat.weight, state["model.query_feat.weight"])
    image = np.asarray(task_image(data))
    result = seg.segment(image)
    assert result.image_size == image.shape[:2]


def task_image(data):
    from esgkit.core.io import load_image

    return load_image(sorted((data / "val").iterdir())[0])


def test_errors_name_the_problem(data, tmp_path):
    with pytest.raises(InputError, match="entityseg_nosuch"):
        make_task(config(split="nosuch"), data)[0].train_dataset()
    with pytest.raises(ConfigError, match="train.num_pointz"):
        make_task(config(num_pointz=3), data)
    with pytest.raises(ConfigError, match="no training task for pipeline .colormap. with segmenter .ground_truth."):
        make_task(OmegaConf.create({"pipeline": {"name": "colormap"}, "segmenter": {"name": "ground_truth"}}), data)


def test_task_type_check():
    with pytest.raises(TypeError):
        CropFormerTask(OmegaConf.create({"segmenter": {"name": "sam"}}), ".")


def test_esgkit_train_trains_a_segmenter_config(data, tmp_path, cli):
    out = tmp_path / "run"
    result = cli("train", "mask2former_tiny", "--data", str(data), "--out", str(out), "--no-progress",
                 "train.steps=2", "train.batch_size=1", "train.val_split=''", "segmenter.short_side=64",
                 "segmenter.max_long_side=96", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert (out / "mask2former.safetensors").is_file() and "trained 2 steps" in result.stdout
    again = cli("train", "mask2former_tiny", "--data", str(data), "--out", str(out), "train.steps=2")
    assert again.returncode != 0 and "--resume" in again.stderr


def test_training_crops_keep_their_test_time_view_index(data):
    task, _ = make_task(config(flip=False), data)
    sample = task.train_dataset()[0]
    assert sample["mirror"].tolist() == [0, 2, 1, 4, 3]  # full; TL↔TR, BL↔BR
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        batch = task.collate([sample])
        full, crop = batch["view_ids"][0].tolist()
        assert full == 0
        seen.add(crop)
        h, w = sample["views"].shape[-2:]
        expected = (sample["views"][crop].float() - task._template.pixel_mean[0]) / task._template.pixel_std[0]
        assert torch.allclose(batch["views"][0, 1, :, :h, :w], expected)
    assert seen == {1, 2, 3, 4}
    flipping, _ = make_task(config(flip=True), data)
    ids = set()
    for seed in range(40):
        torch.manual_seed(seed)
        ids.add(tuple(flipping.collate([sample])["view_ids"][0].tolist()))
    assert {i[1] for i in ids} == {1, 2, 3, 4}


def test_view_ids_default_to_the_view_order():
    from esgkit.components.segmenters.cropformer.model import CropFormerModel, CropFormerModelConfig

    torch.manual_seed(0)
    model = CropFormerModel(CropFormerModelConfig()).eval()
    x = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        a = model(x)["batch"][-1]["masks"]
        b = model(x, torch.tensor([[0, 1, 2]]))["batch"][-1]["masks"]
        c = model(x, torch.tensor([[0, 3, 1]]))["batch"][-1]["masks"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_window_training_cuts_full_resolution_windows_with_their_entities(data):
    cfg = config("mask2former", window=64, flip=False)
    cfg.segmenter.short_side = 0  # the original 96×80 resolution
    task, _ = make_task(cfg, data)
    sample = task.train_dataset()[0]
    assert sample["view"].shape == (3, 80, 96) and sample["labels"].dtype == torch.int16
    image = np.asarray(task_image_of(data, "train", 0))
    assert torch.equal(sample["view"], torch.from_numpy(image).permute(2, 0, 1))  # no resize at short_side 0
    corners = set()
    for seed in range(12):
        torch.manual_seed(seed)
        batch = task.collate([sample])
        view, target = batch["views"][0, 0], batch["targets"][0][:, 0]
        assert view.shape == (3, 64, 64) and target.dtype == torch.bool
        assert target.any((1, 2)).all() and not (target.sum(0) > 1).any()  # entities present, disjoint
        raw = (view * task._template.pixel_std[0] + task._template.pixel_mean[0]).round()
        hits = [(y, x) for y in range(80 - 63) for x in range(96 - 63)
                if torch.equal(raw, sample["view"][:, y : y + 64, x : x + 64].float())]
        assert hits, "the window is a cut of the full-resolution view"
        y, x = hits[0]
        window = sample["labels"][y : y + 64, x : x + 64]
        assert torch.equal(target.any(0), window >= 0)
        corners.add((y, x))
    assert len(corners) > 6  # windows are drawn at random
    losses = task.losses(task.build_model(), task.collate([sample, task.train_dataset()[1]]))
    assert set(losses) == {"image_class", "image_mask", "image_dice"} and all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ConfigError, match="train.window.*mask2former"):
        make_task(config("cropformer", window=32), data)
    with pytest.raises(ConfigError, match="train.window.*multiple of 32"):
        make_task(config("mask2former", window=48), data)


def task_image_of(data, split, index):
    from esgkit.core.io import load_image

    return load_image(sorted((data / split).iterdir())[index])


def test_init_weights_start_cropformer_from_a_mask2former(data, tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(3)
    m2f = get_registry().build("segmenter", {"name": "mask2former", **TINY})
    save_file({f"model.{k}": v.contiguous() for k, v in m2f.model.state_dict().items()}, str(tmp_path / "m2f.safetensors"))
    task, _ = make_task(config("cropformer", init_weights=str(tmp_path / "m2f.safetensors")), data)
    model = task.build_model()
    state = load_file(str(tmp_path / "m2f.safetensors"))
    assert torch.equal(model.model.query_feat.weight, state["model.query_feat.weight"])
    assert any(k.startswith("association.") for k in model.model.state_dict())  # kept at its initialisation
    save_file({"model.nope": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(Exception, match="missing keys"):
        make_task(config("cropformer", init_weights=str(tmp_path / "bad.safetensors")), data)[0].build_model()
