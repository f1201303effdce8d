"""The command line as a user runs it: listing, plugins, config, run, and its error messages."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from esgkit.core.io import save_id_map_png, save_image


@pytest.fixture
def broken_plugin(tmp_path):
    """An installed distribution whose esgkit entry point raises on import."""
    site = tmp_path / "site"
    dist = site / "esgkit_broken-0.7.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: esgkit-broken\nVersion: 0.7\n")
    (dist / "entry_points.txt").write_text("[esgkit]\nbroken = esgkit_broken_mod\n")
    (site / "esgkit_broken_mod.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    import os

    return {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}


def test_list_prints_every_kind_without_importing_torch(cli):
    res = cli("list")
    assert res.returncode == 0, res.stderr
    for kind in ("segmenter", "colorizer", "colormap_encoder", "vision_encoder", "fuser", "mask_decoder",
                 "language_decoder", "associator", "dataset", "evaluator", "executor", "pipeline"):
        assert f"{kind}:" in res.stdout
    assert "ground_truth" in res.stdout and "random" in res.stdout
    # The reason `esgkit list` is fast: no component module (and so no torch) is imported.
    code = ("import sys; from esgkit.core.cli import main; main(['list']); "
            "assert 'torch' not in sys.modules, 'esgkit list imported torch'")
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_list_kind_with_wildcard(cli):
    res = cli("list", "segmenter", "ground*")
    assert res.returncode == 0 and res.stdout.split()[0] == "ground_truth"
    res = cli("list", "segmentr")
    assert res.returncode == 2 and "Did you mean 'segmenter'" in res.stderr


def test_example_plugin_segmenters_listed_and_run_from_yaml(cli, photo_path, tmp_path):
    res = cli("list", "segmenter")
    assert "felzenszwalb" in res.stdout and "slic" in res.stdout and "[skimage]" in res.stdout
    cfg = tmp_path / "slic.yaml"
    cfg.write_text(textwrap.dedent("""
        defaults: [colormap]
        segmenter: {name: slic, n_segments: 30}
        colorizer: {name: location}
    """))
    res = cli("run", str(cfg), "--image", str(photo_path), "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    masks = json.loads((tmp_path / "out" / "masks.json").read_text())
    assert 5 <= len(masks) <= 60  # SLIC asked for ~30 regions on a real photo
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 1000


def test_broken_plugin_is_reported_not_fatal(cli, broken_plugin, photo_path, tmp_path):
    res = cli("list", env=broken_plugin)
    assert res.returncode == 0 and "ground_truth" in res.stdout
    res = cli("plugins", env=broken_plugin)
    assert "broken (esgkit-broken 0.7): FAILED" in res.stdout and "broken on purpose" in res.stdout
    res = cli("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path / "o"),
              "segmenter.name=felzenszwalb", env=broken_plugin)
    assert res.returncode == 0, res.stderr
    strict = {**broken_plugin, "ESGKIT_STRICT_PLUGINS": "1"}
    for args in (("list",), ("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path / "o2"))):
        res = cli(*args, env=strict)
        assert res.returncode == 2 and "plugin 'broken' (esgkit-broken 0.7) failed to load" in res.stderr
        assert "Traceback" not in res.stderr


def test_run_bad_component_name_suggests(cli, photo_path, tmp_path):
    res = cli("run", "pipelines/configs/colormap.yaml", "--image", str(photo_path), "--out", str(tmp_path),
              "segmenter.name=felzenszwal")
    assert res.returncode != 0
    assert "segmenter.name" in res.stderr and "'felzenszwal'" in res.stderr and "'felzenszwalb'" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("override, key", [("segmenter.scalee=3", "segmenter.scalee"),
                                           ("segmenter.scale=lots", "segmenter.scale")])
def test_run_bad_key_or_type_names_full_key(cli, photo_path, tmp_path, override, key):
    res = cli("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path),
              "segmenter.name=felzenszwalb", override)
    assert res.returncode == 2 and f"{key}:" in res.stderr, res.stderr


def test_run_bad_image_and_masks(cli, photo_path, tmp_path):
    res = cli("run", "colormap", "--image", str(tmp_path / "nope.jpg"), "--out", str(tmp_path))
    assert res.returncode == 2 and "nope.jpg: no such file" in res.stderr
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    res = cli("run", "colormap", "--image", str(corrupt), "--out", str(tmp_path))
    assert res.returncode == 2 and "corrupt.jpg: not a readable image" in res.stderr
    small = np.zeros((64, 80), np.int64)
    small[10:20, 10:30] = 1
    save_id_map_png(tmp_path / "small.png", small)
    res = cli("run", "colormap", "--image", str(photo_path), "--masks", str(tmp_path / "small.png"), "--out", str(tmp_path))
    assert res.returncode == 2 and "80x64" in res.stderr and "128x128" in res.stderr
    res = cli("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "ground_truth needs masks" in res.stderr


def test_run_ground_truth_masks_and_debug_traceback(cli, photo_path, tmp_path):
    ids = np.zeros((128, 128), np.int64)
    ids[10:60, 10:60] = 5
    ids[70:120, 40:100] = 9
    save_id_map_png(tmp_path / "m.png", ids)
    res = cli("run", "colormap", "--image", str(photo_path), "--masks", str(tmp_path / "m.png"), "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "o" / "masks.json").read_text())
    assert sorted(e["id"] for e in saved) == [5, 9]
    res = cli("--debug", "run", "colormap", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path))
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_config_show_resolves_overrides(cli):
    res = cli("config", "show", "colormap", "colorizer.seed=42")
    assert res.returncode == 0 and "seed: 42" in res.stdout


def test_demo_writes_overlay(cli, tmp_path):
    """The main job: the shipped CropFormer segments a ShapesWorld scene, the shipped GELLA describes
    it and grounds the nouns; then a user caption."""
    res = cli("demo", "--out", str(tmp_path / "demo"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "demo" / "overlay.png").is_file()
    assert "GELLA's description:" in res.stdout
    data = json.loads((tmp_path / "demo" / "grounding.json").read_text())
    assert len(data["entities"]) > 5 and data["image_size"] == [512, 512]
    if data["phrases"]:  # the printed table lists each grounded noun
        assert "entities" in res.stdout and all(p["text"] in res.stdout for p in data["phrases"])
    else:
        assert "no noun phrase found in the model's description" in res.stderr

    caption = "There is a red circle on the grass below the sky."
    res = cli("demo", "--out", str(tmp_path / "cap"), "--caption", caption)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "cap" / "grounding.json").read_text())
    assert data["caption"] == caption
    assert all(p["text"].lower() in caption.lower() for p in data["phrases"])  # nouns come from the caption

    # a caption without nouns: tests/pipelines/test_gella_shipped.py
    _ = save_image  # noqa


def test_config_show_validates_every_section(cli):
    res = cli("config", "show", "colormap", "colorizer.sede=1")
    assert res.returncode == 2 and "colorizer.sede: unknown key" in res.stderr
    res = cli("config", "show", "--no-validate", "colormap", "colorizer.sede=1")
    assert res.returncode == 0 and "sede: 1" in res.stdout


def test_listing_imports_no_heavy_library():
    """`esgkit list` (with the installed plugins) imports neither torch nor NumPy nor OmegaConf: it stays fast."""
    code = ("import sys, contextlib, io; from esgkit.core.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list'])\n"
            "heavy = {'torch', 'numpy', 'omegaconf'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_list_names_the_shipped_configs(cli):
    res = cli("config", "list")
    assert res.returncode == 0 and "gella_tiny_trained" in res.stdout and "pipelines/configs" in res.stdout


def test_run_segmenter_swaps_the_whole_segmenter_section(cli, photo_path, tmp_path):
    cfg = tmp_path / "slic.yaml"
    cfg.write_text("defaults: [colormap]\nsegmenter: {name: slic, n_segments: 12}\n")
    counts = []
    for k, extra in enumerate(([], ["segmenter.n_segments=60"])):  # overrides apply after the swap
        res = cli("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path / f"out{k}"), "--segmenter",
                  str(cfg), *extra)
        assert res.returncode == 0, res.stderr
        counts.append(len(json.loads((tmp_path / f"out{k}" / "masks.json").read_text())))
    assert 2 <= counts[0] < counts[1], counts  # SLIC's regions, and more of them when asked for more
    empty = tmp_path / "none.yaml"
    empty.write_text("pipeline: {name: colormap}\n")
    res = cli("run", "colormap", "--image", str(photo_path), "--out", str(tmp_path / "o2"), "--segmenter", str(empty))
    assert res.returncode == 2 and "--segmenter" in res.stderr and "has no segmenter section" in res.stderr
