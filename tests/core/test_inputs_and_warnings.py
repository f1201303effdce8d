"""Inputs checked where they enter (captions; inputs a pipeline does not use) and results that are
empty or meaningless said so: no entity, no noun phrase, nothing grounded, an untrained preset."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from esgkit.core import CompatibilityError, InputError, build_pipeline
from esgkit.core.cli import main
from esgkit.core.io import save_id_map_png, save_image
from esgkit.core.pipeline import UntrainedWeightsWarning
from esgkit.core.text import check_caption
from esgkit.core.types import EntityMasks


def ids_map() -> np.ndarray:
    ids = np.zeros((64, 64), np.int64)
    ids[5:30, 5:30] = 1
    ids[35:60, 10:50] = 2
    return ids


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 64×64 image, its two-entity id map, and an id map with no entity, as files and arrays."""
    folder = tmp_path_factory.mktemp("inputs")
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    save_image(folder / "scene.png", image)
    save_id_map_png(folder / "masks.png", ids_map())
    save_id_map_png(folder / "empty.png", np.zeros((64, 64), np.int64))
    masks = EntityMasks(np.stack([ids_map() == 1, ids_map() == 2]), ids=np.array([1, 2]))
    return {"folder": folder, "image": image, "masks": masks, "empty": EntityMasks(np.zeros((0, 64, 64), bool))}


@pytest.fixture(scope="module")
def gella():
    """The shipped, trained tiny GELLA (built once: a few seconds)."""
    return build_pipeline("gella_tiny_trained")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err, out.err
    return rc, out.out, out.err


# --------------------------------------------------------------------------- captions


def test_caption_is_normalised_or_refused():
    assert check_caption("  a red circle\tand\r\ntwo squares\n") == "a red circle and  two squares"
    assert check_caption("un cœur rouge — ✓") == "un cœur rouge — ✓"  # any script, punctuation, symbols
    for empty in ("", "   ", "\t\n \r"):
        with pytest.raises(InputError, match=r"--caption: the caption is empty; give a sentence such as .*leave "
                                             r"--caption out to let the model describe the image"):
            check_caption(empty)
    with pytest.raises(InputError, match=r"control character U\+001B \('\\x1b'\) at position 5"):
        check_caption("a red\x1b[31m circle")
    with pytest.raises(InputError, match=r"caption: .*control character U\+0000 .* at position 0"):
        check_caption("\x00circle", what="caption")
    with pytest.raises(InputError, match="lone surrogate"):
        check_caption("a \ud800 circle")
    with pytest.raises(InputError, match="must be text, not bytes"):
        check_caption(b"a circle")


def test_gella_checks_its_caption(gella, inputs):
    image, masks = inputs["image"], inputs["masks"]
    with pytest.raises(InputError, match="the caption is empty"):
        gella.run(image, masks=masks, caption=" \n ")
    with pytest.raises(InputError, match="control character U\\+0007"):
        gella.run(image, masks, caption="a circle\x07")  # positional masks: the caption is still checked
    with pytest.warns(UserWarning, match=r"no noun phrase found in the caption '\.\.\.' .*nothing to ground"):
        result = gella.run(image, masks=masks, caption="...\t", image_id="scene")
    assert result.caption.text == "..." and result.groundings == ()


def test_caption_given_to_a_pipeline_without_language_is_refused(capsys, inputs):
    folder = inputs["folder"]
    rc, _, err = cli(capsys, "run", "colormap", "--image", folder / "scene.png", "--masks", folder / "masks.png",
                     "--caption", "a dog", "--out", folder / "colormap_out")
    assert rc == 2
    assert ("esgkit: error: pipeline colormap takes no caption (it has no language decoder); drop --caption or use "
            "a grounding config such as esg_tiny") in err
    colormap = build_pipeline("colormap")
    assert "caption" not in colormap.inputs
    with pytest.raises(InputError, match="takes no input 'colour' \\(its inputs: image, image_id, masks\\)"):
        colormap.run(inputs["image"], masks=inputs["masks"], colour="red")
    result = colormap.run(inputs["image"], inputs["masks"], caption=None)  # None: not given
    assert len(result.masks) == 2


def test_demo_refuses_an_empty_caption_before_any_work(capsys, tmp_path):
    rc, _, err = cli(capsys, "demo", "--caption", "   ", "--out", tmp_path / "demo")
    assert rc == 2 and "--caption: the caption is empty" in err
    assert not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------- empty results


def test_no_entity_warns_on_the_command_line(capsys, inputs):
    folder = inputs["folder"]
    rc, out, err = cli(capsys, "run", "colormap", "--image", folder / "scene.png", "--masks", folder / "empty.png",
                       "--out", folder / "empty_out")
    assert rc == 0 and "colormap.png" in out
    assert ("esgkit: warning: the segmenter (GroundTruthSegmenter) found no entity in image 'scene': "
            "the colormap is all black") in err


def test_run_prints_the_table_then_the_files(capsys, inputs):
    folder = inputs["folder"]
    rc, out, err = cli(capsys, "run", "gella_tiny_trained", "--image", folder / "scene.png", "--masks",
                       folder / "masks.png", "--caption", "the blue square next to a green triangle",
                       "--out", folder / "table")
    assert rc == 0, err
    phrases = json.loads((folder / "table" / "grounding.json").read_text())["phrases"]
    lines = out.splitlines()
    assert lines[0].split() == ["noun", "entities", "score"] and set(lines[1]) == {"-"}
    assert len(phrases) == 2 and all(line.startswith(p["text"] + "  ") for line, p in zip(lines[2:], phrases))
    assert all(line.startswith("wrote ") for line in lines[2 + len(phrases):])
    rc, out, _ = cli(capsys, "run", "colormap", "--image", folder / "scene.png", "--masks", folder / "masks.png",
                     "--out", folder / "colormap_table")
    assert rc == 0 and out.startswith("2 entities (scores 1.00 to 1.00) covering 40% of the image\n")


def test_run_warns_once_when_the_segmenter_finds_nothing(capsys, inputs):
    folder = inputs["folder"]
    rc, out, err = cli(capsys, "run", "gella_tiny_trained", "--image", folder / "scene.png", "--masks",
                       folder / "empty.png", "--caption", "a red circle", "--out", folder / "nothing")
    assert rc == 0
    assert err.count("esgkit: warning:") == 2 and "empty.png holds no entity (all pixels are 0)" in err  # load_masks
    assert ("esgkit: warning: the segmenter (GroundTruthSegmenter) found no entity in image 'scene': there is "
            "nothing to ground the phrases on; the masks it was given hold no entity; check --masks") in err
    assert out.splitlines()[0].split() == ["noun", "entities", "score"] and "circle  -" in out


def test_the_no_entity_hint_names_the_segmenters_thresholds():
    from dataclasses import dataclass

    from esgkit.core import Segmenter
    from esgkit.pipelines.colormap import no_entity_hint

    class Thresholded(Segmenter):
        @dataclass
        class Config:
            threshold: float = 0.5
            score_threshold: float = 0.0  # 0: lowering it cannot help
            pred_iou_thresh: float = 0.86

        def __init__(self, config):
            self.config = config

        def segment(self, image, annotation=None, image_id=None):  # pragma: no cover
            raise AssertionError

    assert no_entity_hint(Thresholded(Thresholded.Config())) == (
        "try a lower segmenter.threshold (now 0.5) or segmenter.pred_iou_thresh (now 0.86), or another segmenter "
        "(--segmenter NAME, e.g. sam_tiny or cropformer_tiny)")


def test_gella_warns_on_empty_groundings(gella, inputs):
    image, masks = inputs["image"], inputs["masks"]
    with pytest.warns(UserWarning, match="found no entity in image 'scene': there is nothing to ground"):
        result = gella.run(image, masks=inputs["empty"], caption="a red circle", image_id="scene")
    assert len(result.masks) == 0 and all(not g.entity_ids for g in result.groundings)
    threshold = gella.config.threshold
    gella.config.threshold = 1.01  # no association can reach it
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = gella.run(image, masks=masks, caption="a red circle and two squares", image_id="scene")
    finally:
        gella.config.threshold = threshold
    assert result.groundings and not any(g.entity_ids for g in result.groundings)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith("no noun phrase ('"), messages
    assert "was grounded on any of the 2 entities of image 'scene'" in messages[0]
    assert "pipeline.threshold = 1.01" in messages[0]


def test_gella_warnings_reach_the_command_line(capsys, inputs):
    folder = inputs["folder"]
    rc, out, err = cli(capsys, "run", "gella_tiny_trained", "--image", folder / "scene.png", "--masks",
                       folder / "masks.png", "--caption", "...", "--out", folder / "gella_out")
    assert rc == 0 and "grounding.json" in out
    assert "esgkit: warning: no noun phrase found in the caption '...'" in err and err.count("warning") == 1
    assert "noun" not in out  # no table: the warning says why
    assert "random weights" not in err  # trained weights: no untrained-preset warning


# --------------------------------------------------------------------------- untrained presets


def test_untrained_presets_warn_when_built():
    with pytest.warns(UntrainedWeightsWarning) as caught:
        build_pipeline("gella_tiny")
    assert [str(w.message) for w in caught] == [
        "gella_tiny builds the gella pipeline with random weights (an architecture preset, untrained: "
        "pipeline.checkpoint is empty): its results are meaningless; use gella_tiny_trained / esg_tiny, "
        "set pipeline.checkpoint=FILE, or train it with `esgkit train`"]
    with pytest.warns(UntrainedWeightsWarning, match="cropformer_tiny builds its segmenter \\(cropformer\\) with "
                                                     "random weights .*segmenter.checkpoint is empty"):
        build_pipeline("cropformer_tiny", ["segmenter.checkpoint=''", "segmenter.short_side=64"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        build_pipeline("colormap")  # ground-truth masks: nothing to train


def test_the_paper_preset_refuses_to_build_for_real():
    with pytest.raises(CompatibilityError, match="gella_paper is a paper-scale architecture preset without weights "
                                                 ".*esgkit profile gella_paper"):
        build_pipeline("gella_paper")


def test_untrained_preset_warns_on_the_command_line(capsys, inputs):
    folder = inputs["folder"]
    rc, _, err = cli(capsys, "run", "gella_tiny", "--image", folder / "scene.png", "--masks", folder / "masks.png",
                     "--caption", "a red circle", "--out", folder / "tiny_out", "pipeline.mask_size=64",
                     "vision_encoder.image_size=64", "mask_decoder.num_queries=4")
    assert rc == 0
    assert "esgkit: warning: gella_tiny builds the gella pipeline with random weights" in err
