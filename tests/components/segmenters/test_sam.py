"""The ``sam`` segmenter: official-format checkpoints, presets, the entity rule, the OpenCV fallback."""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from esgkit.core import get_registry
from esgkit.core.errors import CheckpointError, ConfigError
from esgkit.components.segmenters import sam as sam_module
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer


def official_tiny_sam(embed_dim: int = 64) -> Sam:
    """A tiny SAM assembled directly from segment-anything's classes, as build_sam.py assembles vit_b."""
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=256, patch_size=16, embed_dim=embed_dim, depth=2, num_heads=2, mlp_ratio=4, out_chans=64,
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(embed_dim=64, image_embedding_size=(16, 16), input_image_size=(256, 256),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=64, mlp_dim=128, num_heads=2),
            transformer_dim=64, iou_head_depth=3, iou_head_hidden_dim=64,
        ),
    )


def build(**options):
    return get_registry().build("segmenter", {"name": "sam", **options})


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)


def test_official_format_checkpoint_loads_and_runs(tmp_path, image):
    torch.manual_seed(3)
    reference = official_tiny_sam()
    path = tmp_path / "sam_tiny.pth"
    torch.save(reference.state_dict(), path)  # the official files are plain state dicts
    seg = build(checkpoint=str(path), points_per_side=4)
    for key, value in reference.state_dict().items():
        assert torch.equal(seg.sam.state_dict()[key], value), key
    result = seg.segment(image)
    assert result.image_size == image.shape[:2]
    assert (result.masks.sum(0) <= 1).all()


def test_checkpoint_of_another_model_names_expected_and_found_keys(tmp_path):
    path = tmp_path / "not_sam.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(3), "class_head.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as err:
        build(checkpoint=str(path))
    message = str(err.value)
    assert "not a SAM checkpoint" in message
    assert "image_encoder." in message  # expected
    assert "backbone.conv1.weight" in message  # found


def test_checkpoint_of_another_size_names_the_mismatch(tmp_path):
    path = tmp_path / "wider.pth"
    torch.save(official_tiny_sam(embed_dim=32).state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatch: image_encoder"):
        build(checkpoint=str(path))


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        build(checkpoint=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot be read"):
        build(checkpoint=str(tmp_path / "junk.pth"))
    torch.save({"model": {"a": torch.zeros(1)}}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match="is not a SAM checkpoint: expected keys like image_encoder"):
        build(checkpoint=str(tmp_path / "nested.pth"))


def test_presets():
    defaults = {k: p.default for k, p in inspect.signature(SamAutomaticMaskGenerator.__init__).parameters.items()}
    sam1 = build(preset="sam1")
    gen1 = sam_module._MaskGenerator(sam1.sam, **sam1.generator_options())
    for key in ("pred_iou_thresh", "stability_score_thresh", "crop_n_layers", "min_mask_region_area",
                "crop_n_points_downscale_factor"):
        assert getattr(gen1, key) == defaults[key], key
    assert len(gen1.point_grids[0]) == defaults["points_per_side"] ** 2
    sam2 = build(preset="sam2")
    gen2 = sam_module._MaskGenerator(sam2.sam, **sam2.generator_options())
    assert (gen2.pred_iou_thresh, gen2.stability_score_thresh, gen2.crop_n_layers,
            gen2.crop_n_points_downscale_factor, gen2.min_mask_region_area) == (0.86, 0.92, 1, 2, 100)
    assert len(gen2.point_grids[0]) == 32 ** 2 and len(gen2.point_grids[1]) == 16 ** 2
    tuned = build(preset="sam2", pred_iou_thresh=0.5, stability_score_thresh=0.6).generator_options()
    assert (tuned["pred_iou_thresh"], tuned["stability_score_thresh"], tuned["crop_n_layers"]) == (0.5, 0.6, 1)
    with pytest.raises(ConfigError, match="preset"):
        build(preset="sam3")
    with pytest.raises(ConfigError, match="model_type"):
        build(model_type="vit_x")


def test_sam2_preset_runs_the_small_region_cleanup(image, monkeypatch):
    seg = build(preset="sam2", points_per_side=4)
    options = dict(seg.generator_options(), pred_iou_thresh=-1e9, stability_score_thresh=-1e9)
    generator = sam_module._MaskGenerator(seg.sam, output_mode="binary_mask", **options)
    assert generator.use_scipy == (not sam_module._cv2_available())
    called = []
    original = sam_module.remove_small_regions
    monkeypatch.setattr(sam_module, "remove_small_regions", lambda *a: called.append(a[1]) or original(*a))
    records = generator.generate(image)
    assert records  # with the quality filters off, some masks come out
    if generator.use_scipy:
        assert called and set(called) == {100}


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = np.zeros((30, 30), bool)
    mask[2:20, 2:20] = True
    mask[8:10, 8:10] = False  # a 4-pixel hole
    mask[25:27, 25:27] = True  # a 4-pixel island
    filled, changed = sam_module.remove_small_regions(mask, 10, "holes")
    assert changed and filled[8:10, 8:10].all() and filled[25:27, 25:27].all()
    cleaned, changed = sam_module.remove_small_regions(filled, 10, "islands")
    assert changed and not cleaned[25:27, 25:27].any() and cleaned[2:20, 2:20].all()
    same, changed = sam_module.remove_small_regions(cleaned, 10, "islands")
    assert not changed and np.array_equal(same, cleaned)
    # Diagonal neighbours are connected (8-connectivity, as OpenCV's).
    diag = np.zeros((10, 10), bool)
    diag[[1, 2, 3], [1, 2, 3]] = True
    assert not sam_module.remove_small_regions(diag, 3, "islands")[1]
    # Every island small: the largest is kept.
    only_small = np.zeros((10, 10), bool)
    only_small[0, 0] = True
    only_small[5:7, 5:7] = True
    kept, _ = sam_module.remove_small_regions(only_small, 10, "islands")
    assert kept[5:7, 5:7].all() and not kept[0, 0]


def record(mask: np.ndarray, iou: float, stability: float) -> dict:
    return {"segmentation": mask, "predicted_iou": iou, "stability_score": stability}


def test_overlapping_masks_become_non_overlapping_entities():
    whole = np.zeros((20, 20), bool)
    whole[:, :10] = True
    part = np.zeros((20, 20), bool)
    part[:5, :10] = True  # a quarter of `whole`
    other = np.zeros((20, 20), bool)
    other[:, 12:] = True
    # The part ranks above the whole: the whole keeps 3/4 of its area (≥ 0.5) and stays.
    ents = sam_module.masks_to_entities([record(whole, 0.9, 0.9), record(part, 0.95, 0.95),
                                         record(other, 0.7, 1.0)], 20, 20, keep_fraction=0.5)
    assert len(ents) == 3 and (ents.masks.sum(0) <= 1).all()
    np.testing.assert_allclose(ents.scores, [0.95 * 0.95, 0.81, 0.7], rtol=1e-6)
    assert ents.masks[1].sum() == 150 and not (ents.masks[1] & part).any()
    # With the whole ranked first, the part is fully covered and dropped.
    ents = sam_module.masks_to_entities([record(whole, 0.99, 0.99), record(part, 0.9, 0.9)], 20, 20)
    assert len(ents) == 1 and ents.masks[0].sum() == 200
    # A dropped mask's pixels stay free for lower-ranked masks.
    big = np.zeros((20, 20), bool)
    big[:, :16] = True
    ents = sam_module.masks_to_entities([record(part, 0.99, 1.0), record(big, 0.1, 1.0),
                                         record(whole, 0.5, 1.0)], 20, 20, keep_fraction=0.8)
    # `whole` (rank 2) keeps 150/200 < 0.8 → dropped; `big` (rank 3) keeps 270/320 ≥ 0.8: all but `part`.
    assert len(ents) == 2 and ents.masks[1].sum() == 320 - 50
    assert len(sam_module.masks_to_entities([], 5, 6)) == 0


@pytest.mark.parametrize("preset", ["sam1", "sam2"])
def test_mask_generator_equals_the_library_with_the_iou_filter_before_upsampling(image, preset):
    torch.manual_seed(0)
    seg = build(preset=preset, points_per_side=6, points_per_batch=16)
    sam = seg.sam
    with torch.no_grad():  # predicted IoUs spread around the threshold: some masks kept, some filtered
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(0.5)
    # the small-region clean-up may run on scipy or OpenCV (tested above): compare without it
    options = dict(seg.generator_options(), pred_iou_thresh=0.5, stability_score_thresh=0.0, min_mask_region_area=0,
                   box_nms_thresh=1.0, crop_nms_thresh=1.0)  # no duplicate removal: every kept mask is compared
    ours = sam_module._MaskGenerator(sam, output_mode="binary_mask", **options).generate(image)
    theirs = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **options).generate(image)
    unfiltered = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **{**options, "pred_iou_thresh": 0.0}).generate(image)
    assert 0 < len(theirs) < len(unfiltered)  # the filter kept some masks and dropped others
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"]) and a["stability_score"] == pytest.approx(b["stability_score"])
