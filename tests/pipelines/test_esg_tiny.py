"""The whole ESG pipeline (esg_tiny): a segmenter's masks feed GELLA unchanged, for every segmenter."""

from __future__ import annotations

import numpy as np
import pytest

from esgkit.core import EntityMasks, build_pipeline, load_config


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (96, 112, 3), dtype=np.uint8)
    image[10:50, 10:60] = (220, 30, 30)
    image[60:90, 70:105] = (30, 30, 220)
    masks = np.zeros((2, 96, 112), bool)
    masks[0, 10:50, 10:60] = True
    masks[1, 60:90, 70:105] = True
    return image, EntityMasks(masks)


@pytest.mark.parametrize("override", ["", "segmenter.name=sam", "segmenter.name=ground_truth"])
def test_esg_tiny_grounds_a_caption_on_each_segmenters_masks(scene, override, tmp_path):
    overrides = [override] if override else []
    if override.endswith("sam"):
        overrides.append("segmenter.points_per_side=4")
    config = load_config("esg_tiny", overrides)
    expected = override.split("=")[1] if override else "cropformer"
    assert config.segmenter.name == expected
    if expected == "sam":  # switching replaces the section: none of CropFormer's options remain
        assert "num_queries" not in config.segmenter
    pipeline = build_pipeline(config)
    image, masks = scene
    result = pipeline.run(image, masks=masks if expected == "ground_truth" else None,
                          caption="a red square and a blue square", image_id="scene")
    written = pipeline.write(result, str(tmp_path), image)
    assert any(str(p).endswith("grounding.json") for p in written)
    assert result.masks.image_size == image.shape[:2]
    assert not (result.masks.masks.sum(0) > 1).any()  # every segmenter gives GELLA non-overlapping entities
    if expected == "ground_truth":
        assert len(result.masks) == 2
    assert result.caption.text == "a red square and a blue square"
