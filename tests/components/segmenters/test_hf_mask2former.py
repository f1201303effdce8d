"""A Hugging Face Mask2Former folder as the ``mask2former`` segmenter's weights: a tiny model built and
saved here by transformers in the published layout; the entities must be transformers' own panoptic
segments (class dropped), and a wrong folder must be refused naming what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from esgkit.components.segmenters.cropformer.hf_mask2former import HuggingFaceMask2Former
from esgkit.core import get_registry
from esgkit.core.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny Swin Mask2Former (5 classes) saved with save_pretrained. A random one yields no segment
    (transformers thresholds score × mask probability, and its scores and masks are flat), so its class
    head is biased towards two classes and its mask embeddings scaled: four segments (seed 3)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor, SwinConfig

    torch.manual_seed(3)
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=3,
                               num_attention_heads=2, num_queries=8, num_labels=5)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():
        model.class_predictor.bias[:2] += torch.tensor([4.0, 3.5])
        mask_embedder = model.model.transformer_module.decoder.mask_predictor.mask_embedder
        dict(mask_embedder.named_parameters())["2.0.weight"].mul_(100)
    path = tmp_path_factory.mktemp("mask2former-swin-tiny-test")
    model.save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(path)
    return path


def scene() -> np.ndarray:
    image = np.full((80, 120, 3), 90, np.uint8)
    image[10:50, 20:70] = (220, 40, 40)
    image[40:75, 60:110] = (30, 200, 60)
    return image


def build(folder, **options):
    return get_registry().build("segmenter", {"name": "mask2former", "checkpoint": str(folder), "short_side": 64,
                                              "max_long_side": 96, **options})


def test_entities_are_transformers_own_panoptic_segments(folder):
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    segmenter = build(folder)
    assert isinstance(segmenter, HuggingFaceMask2Former)
    image = scene()
    entities = segmenter.segment(image)

    model = Mask2FormerForUniversalSegmentation.from_pretrained(folder).eval()  # transformers' own loading
    processor = Mask2FormerImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        outputs = model(**processor(images=image, return_tensors="pt"))
    reference = processor.post_process_panoptic_segmentation(outputs, threshold=0.0, label_ids_to_fuse=set(),
                                                               target_sizes=[image.shape[:2]])[0]
    segments = reference["segments_info"]
    labels = reference["segmentation"].numpy()
    assert len(segments) >= 2 and len({s['score'] for s in segments}) >= 2  # the test compares something
    assert entities.masks.shape == (len(segments), *image.shape[:2])
    assert entities.ids.tolist() == [s["id"] for s in segments]
    np.testing.assert_allclose(entities.scores, [s["score"] for s in segments], rtol=1e-6)
    for mask, s in zip(entities.masks, segments):
        assert np.array_equal(mask, labels == s["id"])
    assert entities.masks.sum(0).max() == 1  # non-overlapping, as GELLA's inputs are


def test_the_score_threshold_and_input_size_keys_apply(folder):
    image = scene()
    everything = build(folder).segment(image)
    strict = build(folder, score_threshold=float(np.median(everything.scores))).segment(image)
    assert 0 < len(strict) < len(everything)
    assert build(folder, short_side=0).processor.do_resize is False  # 0: the original resolution
    with pytest.raises(ConfigError, match="segmenter.threshold"):
        build(folder, threshold=1.5)


def test_a_wrong_folder_is_refused_naming_the_problem(folder, tmp_path):
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="'bert' model, not mask2former"):
        build(other)

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_text((folder / name).read_text())
    state = load_file(str(folder / "model.safetensors"))
    state["model.extra.weight"] = state.pop("class_predictor.weight")
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: class_predictor\.weight.*unexpected keys: model\.extra"):
        build(broken)
