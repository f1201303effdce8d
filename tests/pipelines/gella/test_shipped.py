"""The shipped gella_tiny model: small, loads strictly, and `esgkit eval` reproduces the model
card's numbers (models/gella_tiny/README.md) on the first images of the same val split."""

import json
from pathlib import Path

import pytest

import esgkit.models
from esgkit.core import build_pipeline
from esgkit.datasets.shapesworld import generate

WEIGHTS = Path(esgkit.models.__file__).resolve().parent / "gella_tiny"


def test_shipped_checkpoint_is_small_safetensors_and_loads():
    path = WEIGHTS / "gella_tiny.safetensors"
    assert path.stat().st_size <= 20 * 2**20
    pipeline = build_pipeline("gella_tiny_trained")  # a missing or unexpected key would raise
    assert pipeline.config.checkpoint.endswith("gella_tiny.safetensors")


def test_eval_reproduces_the_model_card_on_a_subset(tmp_path):
    from esgkit.core.cli import main

    card = json.loads((WEIGHTS / "eval.json").read_text())
    subset, data = card["subset"], card["val_data"]
    root = generate(tmp_path / "sw", images=subset["images"], seed=data["seed"], size=data["size"], split="val")
    out = tmp_path / "metrics.json"
    assert main(["eval", "gella_tiny_trained", "--data", str(root), "--out", str(out),
                 "--max-images", str(subset["images"])]) == 0
    got = json.loads(out.read_text())["metrics"]
    for key, want in subset["metrics"].items():
        if want is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(want, abs=1e-6), key


def test_demo_with_a_caption_without_nouns(tmp_path, capsys):
    from esgkit.core.cli import main

    assert main(["demo", "--out", str(tmp_path), "--caption", "...", "--size", "256x256"]) == 0
    captured = capsys.readouterr()
    assert "esgkit: warning: no noun phrase found in the caption '...'" in captured.err
    assert "noun" not in captured.out  # no table: the warning (once) says why
    assert json.loads((tmp_path / "grounding.json").read_text())["phrases"] == []
    assert (tmp_path / "overlay.png").is_file()


def test_demo_runs_the_whole_esg_by_default(tmp_path, capsys):
    """CropFormer segments the scene, GELLA grounds on its entities; esg.png shows both."""
    from esgkit.core.cli import main
    from esgkit.core.io import load_image

    assert main(["demo", "--out", str(tmp_path), "--narrative", "--size", "256x256"]) == 0
    out = capsys.readouterr().out
    assert "entities from the CropFormer segmenter" in out
    data = json.loads((tmp_path / "grounding.json").read_text())
    assert data["entities"] and any(p["entity_ids"] for p in data["phrases"])
    entities, overlay, both = (load_image(tmp_path / f) for f in ("entities.png", "overlay.png", "esg.png"))
    assert both.shape[1] == entities.shape[1] + overlay.shape[1] and entities.shape[:2] == (256, 256)


def test_demo_grounds_the_scene_narrative(tmp_path, capsys):
    """The shipped model extracts the narrative's annotated noun phrases and grounds each one."""
    from esgkit.core.cli import main
    from esgkit.pipelines.cli import demo_scene

    assert main(["demo", "--out", str(tmp_path), "--narrative", "--size", "256x256", "--gt-masks"]) == 0
    out = capsys.readouterr().out
    assert "the scene narrative" in out and "entities from ground-truth masks" in out
    phrases = json.loads((tmp_path / "grounding.json").read_text())["phrases"]
    annotated = [p.text for p in demo_scene(0, "256x256")["caption"].phrases]
    found = [p["text"] for p in phrases]
    assert sum(a in found for a in annotated) >= 0.9 * len(annotated)
    assert sum(bool(p["entity_ids"]) for p in phrases) >= 0.8 * len(phrases)
