"""ShapesWorld: determinism, the content the benchmark promises, and honest language."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from esgkit.core.errors import InputError
from esgkit.datasets.shapesworld import ShapesWorldDataset, generate, parse_size
from esgkit.datasets.shapesworld_language import Describer
from esgkit.datasets.shapesworld_scene import COLORS, SHAPES, make_scene


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_for_any_worker_count(tmp_path):
    a = generate(tmp_path / "a", images=3, seed=7, size="128x96", split="train", workers=1)
    b = generate(tmp_path / "b", images=3, seed=7, size="128x96", split="train", workers=2)
    c = generate(tmp_path / "c", images=3, seed=8, size="128x96", split="train", workers=1)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert da.keys() == dc.keys() and da != dc


def test_files_are_written_in_every_format(sw_root):
    for rel in ("val/000000000001.jpg", "annotations/panoptic_val.json", "annotations/panoptic_val/000000000001.png",
                "annotations/png_coco_val.json", "annotations/entityseg_val.json", "annotations/captions_val.json",
                "refcoco_val/refs(unc).p", "refcoco_val/refs(unc).json", "refcoco_val/instances.json",
                "refcoco+_val/refs(unc).p", "refcoco+_val/refs(unc).json", "refcoco+_val/instances.json",
                "shapesworld_val.json"):
        assert (sw_root / rel).is_file(), rel
    pan = json.loads((sw_root / "annotations/panoptic_val.json").read_text())
    cats = {c["name"]: c["isthing"] for c in pan["categories"]}
    assert cats["circle"] == 1 and cats["wire"] == 1 and cats["sky"] == 0 and cats["grass"] == 0
    assert pan["images"][0]["width"] == 192 and pan["images"][0]["height"] == 160


def test_sample_keys_and_consistency(sw_root):
    ds = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(sw_root), split="val"))
    assert len(ds) == 6
    for sample in ds:
        assert sample["image"].shape == (160, 192, 3) and sample["image"].dtype == np.uint8
        masks = sample["masks"]
        assert masks.image_size == (160, 192)
        # panoptic: every pixel belongs to exactly one listed segment
        assert (masks.masks.sum(0) == 1).all()
        assert [s["id"] for s in sample["segments_info"]] == masks.ids.tolist()
        assert masks.masks.sum((1, 2)).min() > 0
        caption = sample["caption"]
        assert len(caption.phrases) == len(sample["phrase_segments"]) == len(sample["phrase_is_thing"]) > 0
        known = set(masks.ids.tolist())
        for phrase, ids in zip(caption.phrases, sample["phrase_segments"]):
            assert caption.text[phrase.start:phrase.end] == phrase.text
            assert ids and set(ids) <= known
            assert phrase.plural == (len(ids) > 1)
        for ref in sample["refs"]:
            assert ref["segment_id"] in known and ref["sent"]
            x, y, w, h = ref["bbox"]
            assert 0 <= x < 192 and 0 <= y < 160 and w > 0 and h > 0
        assert sample["description"].endswith(".")


def test_scenes_hold_what_the_benchmark_promises():
    """Across a few scenes: ≥ 8 colours, all shape kinds, plurals, thin structures, stuff."""
    colors, shapes, thin, stuff, plural_phrases, n_refs = set(), set(), set(), set(), 0, 0
    for k in range(25):
        rng = np.random.default_rng([11, k])
        scene = make_scene(rng, 128, 128)
        d = Describer(scene, rng)
        for e in scene.entities:
            if e.isthing:
                colors.add(e.color)
                (shapes if e.category in SHAPES else thin).add(e.category)
            else:
                stuff.add(e.category)
        plural_phrases += sum(p.plural for p in d.narrative())
        n_refs += len(d.refs())
    assert len(colors) >= 8 and colors <= set(COLORS)
    assert shapes == set(SHAPES)
    assert thin == {"wire", "fence"}
    assert len(stuff) >= 5
    assert plural_phrases >= 10 and n_refs >= 50


SIZE = {"small", "medium-sized", "large"}
TEXTURE = {"striped", "dotted", "checkered", "hollow"}
RELATIONS = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}


def _parse(expr: str) -> tuple[dict[str, str], str]:
    """Split 'the [size] [colour] [texture] shape [rest]' (or 'the leftmost colour shape' …) — an
    independent reading of the grammar's output, used to check that each ref names one thing."""
    words = expr.split()
    assert words[0] == "the"
    words = words[1:]
    qualifier = ""
    if words[0] in ("leftmost", "rightmost", "topmost", "lowest", "upper", "lower"):
        qualifier = words.pop(0)
    attrs: dict[str, str] = {}
    for w in list(words):
        if w in SIZE:
            attrs["size"] = {"medium-sized": "medium"}.get(w, w)
        elif w in COLORS:
            attrs["color"] = w
        elif w in TEXTURE:
            attrs["texture"] = w
        else:
            break
        words.pop(0)
    attrs["category"] = words.pop(0)
    rest = " ".join(words)
    return attrs, (qualifier + " " + rest).strip()


def _fits(ann: dict, attrs: dict[str, str], cats: dict[int, str]) -> bool:
    return cats[ann["category_id"]] == attrs["category"] and all(ann.get(k) == v for k, v in attrs.items() if k != "category")


def test_every_referring_expression_names_exactly_one_thing(tmp_path):
    root = generate(tmp_path, images=12, seed=5, size="256x256", split="val")
    inst = json.loads((root / "refcoco_val/instances.json").read_text())
    cats = {c["id"]: c["name"] for c in inst["categories"]}
    pan = json.loads((root / "annotations/panoptic_val.json").read_text())
    stuff_names = {c["id"]: c["name"] for c in pan["categories"] if not c["isthing"]}
    refs = json.loads((root / "refcoco_val/refs(unc).json").read_text())
    from esgkit.core.io import load_id_map_png

    checked = set()
    for ref in refs:
        things = [a for a in inst["annotations"] if a["image_id"] == ref["image_id"]]
        target = next(a for a in things if a["id"] == ref["ann_id"])
        size = next((i["height"], i["width"]) for i in inst["images"] if i["id"] == ref["image_id"])
        center = {a["id"]: _centroid(a, *size) for a in things}
        for sent in ref["sentences"]:
            attrs, rest = _parse(sent["sent"])
            assert _fits(target, attrs, cats), sent["sent"]
            fitting = [a for a in things if _fits(a, attrs, cats)]
            rivals = [a for a in fitting if a["id"] != target["id"]]
            if not rest:
                assert not rivals, f"{sent['sent']!r} also fits {len(rivals)} other thing(s)"
                checked.add("attributes")
                continue
            tx, ty = center[target["id"]]
            axis = {"leftmost": (0, -1), "rightmost": (0, 1), "topmost": (1, -1), "lowest": (1, 1), "upper": (1, -1),
                    "lower": (1, 1), "on the left": (0, -1), "on the right": (0, 1)}
            if rest in axis:
                a, sign = axis[rest]
                assert rivals and all(sign * (center[target["id"]][a] - center[r["id"]][a]) > 0 for r in rivals), sent["sent"]
                checked.add("position")
                continue
            m = re.fullmatch(r"(on|in) the (\w+)", rest)
            if m:
                pan_ann = next(a for a in pan["annotations"] if a["image_id"] == ref["image_id"])
                id_map = load_id_map_png(root / "annotations/panoptic_val" / pan_ann["file_name"])
                seg_cat = {s["id"]: s["category_id"] for s in pan_ann["segments_info"]}
                # what lies under each thing's centroid once the things are removed: its stuff
                under = {}
                for a in fitting:
                    x, y = center[a["id"]]
                    under[a["id"]] = _stuff_at(id_map, seg_cat, stuff_names, int(x), int(y))
                assert under[target["id"]] in (m.group(2), None)
                assert all(under[r["id"]] != m.group(2) for r in rivals), sent["sent"]
                checked.add("stuff")
                continue
            m = re.fullmatch(r"(left of|right of|above|below) the (\w+) (\w+)", rest)
            assert m, f"unparsed expression {sent['sent']!r}"
            land = [a for a in things if cats[a["category_id"]] == m.group(3) and a.get("color") == m.group(2)]
            assert len(land) == 1, sent["sent"]
            a, sign = RELATIONS[m.group(1)]
            lc = center[land[0]["id"]]
            assert sign * (center[target["id"]][a] - lc[a]) > 0
            assert all(sign * (center[r["id"]][a] - lc[a]) <= 0 for r in rivals), sent["sent"]
            checked.add("relation")
    assert {"attributes", "position"} <= checked


def _centroid(ann: dict, h: int, w: int) -> tuple[float, float]:
    from esgkit.datasets.common import segmentation_to_mask

    ys, xs = np.nonzero(segmentation_to_mask(ann["segmentation"], h, w, "test"))
    return float(xs.mean()), float(ys.mean())


def _stuff_at(id_map, seg_cat, stuff_names, x, y):
    """The stuff nearest to (x, y) along its row (things cover the centroid itself)."""
    row = id_map[y]
    for d in range(id_map.shape[1]):
        for xx in (x - d, x + d):
            if 0 <= xx < len(row) and seg_cat.get(int(row[xx])) in stuff_names:
                return stuff_names[seg_cat[int(row[xx])]]
    return None


def test_thin_structures_are_lost_when_downscaled():
    """Wires and fences keep little IoU after a 1024² → 256² → 1024² round trip; big shapes keep most."""
    from PIL import Image

    def roundtrip(mask):
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize((256, 256), Image.BILINEAR)
        return np.asarray(small.resize((1024, 1024), Image.BILINEAR)) > 127

    thin_iou, big_iou = [], []
    for k in range(4):
        scene = make_scene(np.random.default_rng([2, k]), 1024, 1024)
        for e in scene.entities:
            m = scene.id_map == e.id
            back = roundtrip(m)
            iou = (m & back).sum() / max(1, (m | back).sum())
            if e.category in ("wire", "fence"):
                thin_iou.append(iou)
            elif e.isthing and e.size == "large" and e.texture != "hollow":
                big_iou.append(iou)
    assert thin_iou and big_iou
    assert np.mean(thin_iou) < 0.5 < 0.85 < np.mean(big_iou)


def test_thin_widths_stay_thin_at_high_resolution():
    """Widths grow only as side^0.35: 1–3 px at 512², 2–6 px at 4096² (8× the side)."""
    from esgkit.datasets.shapesworld_scene import _thin_width

    rng = np.random.default_rng(0)
    assert {_thin_width(rng, 512) for _ in range(200)} == {1, 2, 3}
    assert {_thin_width(rng, 4096) for _ in range(200)} == {2, 4, 6}


@pytest.mark.parametrize("bad", ["512", "512x", "axb", "32x32", "9000x512"])
def test_bad_sizes_are_clear_errors(bad):
    if bad == "512":
        assert parse_size(bad) == (512, 512)
        return
    with pytest.raises(InputError, match="size"):
        parse_size(bad)


def test_size_is_width_by_height():
    assert parse_size("640x480") == (640, 480)


def test_cli_writes_a_split(tmp_path):
    import argparse

    from esgkit.datasets import cli

    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(["data", "shapesworld", str(tmp_path), "--images", "2", "--size", "96x64",
                              "--split", "tiny", "--workers", "1"])
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "shapesworld_tiny.json").read_text())
    assert meta["images"] == 2 and (meta["width"], meta["height"]) == (96, 64)
    assert len(list((tmp_path / "tiny").iterdir())) == 2


def test_docs_figure_caption_is_what_the_generator_writes(tmp_path):
    """docs/shapesworld.md quotes the caption of its figure; regenerate it and compare."""
    from esgkit.datasets.shapesworld_figure import make_figure

    docs = Path(__file__).resolve().parents[2] / "docs" / "shapesworld.md"
    quote = " ".join(line[1:].strip() for line in docs.read_text().splitlines() if line.startswith(">"))
    caption = make_figure(tmp_path / "fig.png", seed=1, size=2048)
    assert quote == caption
    assert (tmp_path / "fig.png").stat().st_size > 50_000


def test_refcoco_plus_names_the_same_targets_without_location_words(sw_root):
    from esgkit.core.errors import ConfigError
    from esgkit.datasets.refcoco import read_refs
    from esgkit.datasets.shapesworld_language import has_location

    refs = read_refs(sw_root / "refcoco_val" / "refs(unc).p")
    plus = read_refs(sw_root / "refcoco+_val" / "refs(unc).p")
    assert plus and {(r["image_id"], r["ann_id"]) for r in plus} <= {(r["image_id"], r["ann_id"]) for r in refs}
    sentences = [s["sent"] for r in plus for s in r["sentences"]]
    assert not any(has_location(s) for s in sentences), sentences
    assert any(has_location(s["sent"]) for r in refs for s in r["sentences"])  # the RefCOCO-style ones do use them
    assert has_location("the star above the ring") and not has_location("the dotted star on the grass")
    dataset = ShapesWorldDataset(ShapesWorldDataset.Config(root=str(sw_root), split="val", refs="refcoco+"))
    sample = dataset[0]
    ids = set(sample["masks"].ids.tolist())
    assert all(r["segment_id"] in ids and not has_location(r["sent"]) for r in sample["refs"])
    with pytest.raises(ConfigError, match="refcoco\\+"):
        ShapesWorldDataset(ShapesWorldDataset.Config(root=str(sw_root), split="val", refs="refcocog"))[0]
