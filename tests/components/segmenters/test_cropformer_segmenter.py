"""The registered ``cropformer`` / ``mask2former`` segmenters and their checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from esgkit.core import EntityMasks, get_registry
from esgkit.core.errors import CheckpointError, ConfigError, InputError
from esgkit.components.segmenters.cropformer.segmenter import resized_input_size


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (131, 203, 3), dtype=np.uint8)
    img[20:90, 30:120] = (220, 40, 40)
    return img


def build(name: str, **options):
    return get_registry().build("segmenter", {"name": name, **options})


@pytest.mark.parametrize("name,views", [("cropformer", 5), ("mask2former", 1)])
def test_segment_gives_non_overlapping_masks_at_original_size(name, views, image):
    torch.manual_seed(0)
    seg = build(name)
    masks, scores, regions, size, padded = seg.predict(image)
    assert len(regions) == views and masks.shape[0] == views
    assert padded[0] % 32 == 0 and padded[1] % 32 == 0
    result = seg.segment(image)
    assert isinstance(result, EntityMasks)
    assert result.image_size == image.shape[:2] and result.masks.dtype == bool
    assert (result.masks.sum(0) <= 1).all()
    assert len(result) > 0
    assert np.all(np.diff(result.scores) <= 0) and np.all((result.scores > 0) & (result.scores <= 1))


def test_input_size_follows_the_short_side_rule():
    assert resized_input_size(600, 900, 800, 1333) == (800, 1200)
    assert resized_input_size(600, 1800, 800, 1333) == (444, 1333)
    assert resized_input_size(37, 51, 0, 1333) == (37, 51)  # original resolution


@pytest.mark.parametrize("name", ["cropformer", "mask2former"])
def test_score_threshold_drops_low_scoring_entities(name, image):
    torch.manual_seed(0)
    seg = build(name)
    every = seg.segment(image)
    _, scores, *_ = seg.predict(image)
    seg.config.score_threshold = float(torch.quantile(scores, 0.5))  # half the queries' entity scores
    kept = seg.segment(image)
    assert 0 < len(kept) < len(every)
    with pytest.raises(ConfigError, match="segmenter.score_threshold: must lie in \\[0, 1\\)"):
        build(name, score_threshold=1.5)


def test_rejects_grey_images():
    with pytest.raises(InputError, match="RGB"):
        build("mask2former").segment(np.zeros((20, 20), np.uint8))


def test_checkpoint_round_trip(tmp_path, image):
    torch.manual_seed(0)
    seg = build("cropformer")
    path = tmp_path / "cropformer.safetensors"
    save_file(seg.model.state_dict(), str(path))
    torch.manual_seed(1)
    loaded = build("cropformer", checkpoint=str(path))
    a, b = seg.predict(image), loaded.predict(image)
    torch.testing.assert_close(a[0], b[0])
    # A trainer that wraps the network saves "model."-prefixed keys; those load too.
    save_file({f"model.{k}": v for k, v in seg.model.state_dict().items()}, str(path))
    build("cropformer", checkpoint=str(path))


def test_checkpoint_errors_name_missing_unexpected_and_mismatched_keys(tmp_path):
    seg = build("mask2former")
    state = dict(seg.model.state_dict())
    state.pop("class_head.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        build("mask2former", checkpoint=str(path))
    assert "missing keys: class_head.weight" in str(err.value)
    assert "unexpected keys: extra.weight" in str(err.value)
    # A Mask2Former checkpoint lacks CropFormer's view association module.
    save_file(seg.model.state_dict(), str(path))
    with pytest.raises(CheckpointError, match="missing keys: association"):
        build("cropformer", checkpoint=str(path))
    # Another config (more queries) → shape mismatch named.
    with pytest.raises(CheckpointError, match="shape mismatch: query_feat.weight"):
        build("mask2former", checkpoint=str(path), num_queries=12)
    with pytest.raises(CheckpointError, match="no such file"):
        build("mask2former", checkpoint=str(tmp_path / "nope.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        build("mask2former", checkpoint=str(tmp_path / "junk.safetensors"))


@pytest.mark.parametrize("name,views", [("cropformer", 2), ("mask2former", 1)])
def test_training_sample_cuts_targets_like_the_views(name, views, image):
    seg = build(name)
    masks = np.zeros((2, *image.shape[:2]), bool)
    masks[0, :10, :10] = True  # top-left corner: outside the bottom-right crop
    masks[1, 60:, 100:] = True
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        sample = seg.training_sample(image, masks, gen)
        v, t, regions = sample["views"], sample["targets"], sample["regions"]
        assert v.shape[0] == views and t.shape[:2] == (2, views) and t.shape[-2:] == v.shape[-2:]
        h, w = v.shape[-2:]
        size = resized_input_size(*image.shape[:2], seg.config.short_side, seg.config.max_long_side)
        assert not t[..., size[0]:, :].any() and not t[..., size[1]:].any()  # padding is empty
        assert set(t.unique().tolist()) <= {0.0, 1.0}
        for k, r in enumerate(regions):
            for n in range(2):
                inside = masks[n, r.y0 : r.y1, r.x0 : r.x1].any()
                assert bool(t[n, k].any()) == bool(inside)
