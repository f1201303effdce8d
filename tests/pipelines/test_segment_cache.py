"""`esgkit eval` grades the masks of the config's own segmenter (not the ground truth), records which
segmenter and weights made them, and caches them so a second evaluation does not run it again."""

import json

import numpy as np
import pytest

from esgkit.core import EntityMasks, Segmenter
from esgkit.core.cli import main
from esgkit.pipelines.segment_cache import CachedSegmenter, cached_segmenter, segmenter_identity

@pytest.fixture(scope="module")
def sw_root(tmp_path_factory):
    from esgkit.datasets.shapesworld import generate

    return generate(tmp_path_factory.mktemp("sw"), images=2, seed=3, size="192x160", split="val")


ONE_IMAGE = ["--max-images", "1", "--skip", "nouns", "--no-res", "--no-progress"]


def test_eval_runs_the_configs_segmenter_and_reuses_its_cached_masks(sw_root, tmp_path, monkeypatch):
    from esgkit.components.segmenters.cropformer.segmenter import CropFormerSegmenter

    calls = []
    real = CropFormerSegmenter.segment

    def counted(self, image, annotation=None, image_id=None):
        calls.append(image_id)
        return real(self, image, annotation=annotation, image_id=image_id)

    monkeypatch.setattr(CropFormerSegmenter, "segment", counted)
    cache = tmp_path / "cache"
    args = ["eval", "esg_tiny", "--data", str(sw_root), "--mask-cache", str(cache), *ONE_IMAGE]
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    assert len(calls) == 1  # CropFormer ran, on the one image
    first = json.loads((tmp_path / "a.json").read_text())
    assert first["segmenter"]["name"] == "cropformer" and len(first["segmenter"]["weights_sha256"]) == 64
    assert first["metrics"]["AR"] <= first["metrics"]["AR_oracle"] + 1e-9  # the masks bound the grounding
    (folder,) = cache.iterdir()
    assert json.loads((folder / "segmenter.json").read_text()) == first["segmenter"]
    assert main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert len(calls) == 1  # the second evaluation read the cached masks
    assert json.loads((tmp_path / "b.json").read_text())["metrics"] == first["metrics"]
    # the same config on ground truth grades other masks: the oracle is perfect there
    assert main([*args, "--out", str(tmp_path / "gt.json"), "segmenter.name=ground_truth"]) == 0
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert gt["segmenter"]["name"] == "ground_truth" and gt["metrics"]["AR_oracle"] == pytest.approx(1.0)
    assert gt["metrics"]["AR_oracle"] > first["metrics"]["AR_oracle"]
    # another config's whole segmenter section in one word (Table XXII)
    assert main([*args, "--out", str(tmp_path / "m2f.json"), "--segmenter", "mask2former_tiny"]) == 0
    m2f = json.loads((tmp_path / "m2f.json").read_text())
    assert m2f["segmenter"]["name"] == "mask2former" and m2f["segmenter"]["config"]["hidden_dim"] == 32
    assert m2f["segmenter"]["weights_sha256"] != first["segmenter"]["weights_sha256"]


class _Counting(Segmenter):
    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def segment(self, image, annotation=None, image_id=None):
        self.calls += 1
        return EntityMasks(np.zeros((self.n, *image.shape[:2]), bool))


def test_cache_keys_on_the_image_and_the_segmenter_and_keeps_empty_results(tmp_path):
    inner = _Counting(0)
    cached = CachedSegmenter(inner, {"name": "counting", "config": {"n": 0}, "weights_sha256": ""}, tmp_path)
    image = np.zeros((6, 5, 3), np.uint8)
    assert len(cached.segment(image)) == 0 and len(cached.segment(image)) == 0
    assert inner.calls == 1 and (cached.hits, cached.misses) == (1, 1)  # an empty result is kept too
    cached.segment(image + 1)
    assert inner.calls == 2  # other pixels, other entry
    other = CachedSegmenter(_Counting(2), {"name": "counting", "config": {"n": 2}, "weights_sha256": ""}, tmp_path)
    assert len(other.segment(image)) == 2  # another config never reads this one's masks
    for p in cached.folder.glob("*.json"):
        if p.name != "segmenter.json":
            p.write_text("{broken")
    before = inner.calls
    cached.segment(image)
    assert inner.calls == before + 1  # a damaged entry is recomputed, not an error


def test_a_segmenter_given_as_a_builder_is_built_only_on_a_miss(tmp_path):
    identity = {"name": "counting", "config": {"n": 1}, "weights_sha256": ""}
    image = np.zeros((6, 5, 3), np.uint8)
    CachedSegmenter(_Counting(1), identity, tmp_path).segment(image)  # stored by a built one
    built: list[_Counting] = []

    def build() -> _Counting:
        built.append(_Counting(1))
        return built[-1]

    lazy = CachedSegmenter(None, identity, tmp_path, build=build)
    assert len(lazy.segment(image)) == 1 and not built and not lazy.built  # read from the cache, no model
    assert len(lazy.segment(image + 1)) == 1 and len(built) == 1 and lazy.built  # a miss builds it, once
    lazy.segment(image + 2)
    assert len(built) == 1 and built[0].calls == 2 and (lazy.hits, lazy.misses) == (1, 2)


def test_segmenters_that_read_given_masks_are_not_cached(tmp_path):
    from esgkit.core import get_registry

    gt = get_registry().build("segmenter", {"name": "ground_truth"})
    assert cached_segmenter(gt, tmp_path) is gt
    assert segmenter_identity(gt) == {"name": "ground_truth", "config": {}, "weights_sha256": ""}
