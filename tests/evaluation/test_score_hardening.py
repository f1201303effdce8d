"""`esgkit score` on hostile prediction and ground-truth files: every bad file ends in one clear
error (exit 2, ``esgkit: error:`` naming the file and the entry or field), never a traceback.

Each case starts from a valid ShapesWorld split and its oracle predictions, breaks one thing in one
file, and runs the real command line in-process."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzzing import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from esgkit.core.cli import main
from esgkit.core.io import load_id_map_png, save_id_map_png
from esgkit.datasets.png import read_narratives
from esgkit.evaluation.oracle import oracle_predictions

GT = {
    "png": "annotations/png_coco_val.json",
    "nouns": "annotations/png_coco_val.json",
    "res": "refcoco_val/refs(unc).json",
    "rec": "refcoco_val/refs(unc).json",
    "entity": "annotations/entityseg_val.json",
    "panoptic": "annotations/panoptic_val.json",
}
BOMB = {"size": [100000, 100000], "counts": "0"}  # asks for a 10¹⁰-pixel mask
PANOPTIC_PNG = "annotations/panoptic_val/000000000001.png"


@pytest.fixture(scope="module")
def oracle(sw_root, tmp_path_factory) -> dict[str, Any]:
    """The valid prediction data of every task (panoptic: its JSON; its PNG folder is ``pred_dir``)."""
    out = tmp_path_factory.mktemp("oracle")
    preds: dict[str, Any] = {}
    for task in ("png", "res", "rec", "entity", "panoptic"):
        path = oracle_predictions(task, sw_root / GT[task], out / f"{task}.json")
        preds[task] = json.loads(path.read_text())
    preds["nouns"] = [{"image_id": n.image_id, "narrative_index": n.index,
                       "phrases": [[p.start, p.end] for p in n.caption.phrases]}
                      for n in read_narratives(sw_root / GT["nouns"])]
    preds["pred_dir"] = str(out / "panoptic")
    return preds


def put(*keys: Any) -> Callable[[Any], Any]:
    """Set ``data[k0][k1]... = value`` (the last argument)."""
    *keys, value = keys

    def change(data: Any) -> Any:
        target = data
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return data
    return change


def drop(*keys: Any) -> Callable[[Any], Any]:
    """Delete ``data[k0][k1]...``."""
    def change(data: Any) -> Any:
        target = data
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
        return data
    return change


def every(key: str, field: str, value: Any) -> Callable[[Any], Any]:
    """Set ``field`` of every entry of ``data[key]`` (so the entry a metric reads first is broken)."""
    def change(data: Any) -> Any:
        for entry in data[key]:
            entry[field] = value
        return data
    return change


def raw(text: str) -> Callable[[Any], str]:
    """Replace the whole file by ``text``."""
    return lambda data: text


def _png_stray(path: Path) -> None:
    id_map = load_id_map_png(path)
    id_map[0, 0] = 999
    save_id_map_png(path, id_map)


# (task, file to break: "pred" or a GT path, how, what the message must say besides the file name)
CASES = [
    # predictions: missing fields, wrong types, wrong top level, bombs, deep nesting
    ("png", "pred", drop(0, "segmentation"), ["entry 0", "lacks 'segmentation'"]),
    ("png", "pred", put(0, "phrase_index", "first"), ["entry 0", "phrase_index must be an integer"]),
    ("png", "pred", put(1, "image_id", ["1"]), ["entry 1", "image_id must be an id"]),
    ("png", "pred", put(0, "narrative_index", -1), ["entry 0", "narrative_index must be an integer"]),
    ("png", "pred", lambda d: {"predictions": d}, ["expected a JSON list"]),
    ("png", "pred", put(2, "oops"), ["entry 2", "not an object"]),
    ("png", "pred", put(0, "segmentation", BOMB), ["entry 0"]),
    ("png", "pred", raw("[" * 100_000 + "]" * 100_000), ["nested"]),
    ("nouns", "pred", put(0, "phrases", "the sky"), ["entry 0", "phrases must be a list of [start, end]"]),
    ("nouns", "pred", put(0, "phrases", [[0.5, 3]]), ["entry 0", "phrases must be"]),
    ("nouns", "pred", drop(1, "image_id"), ["entry 1", "lacks 'image_id'"]),
    ("res", "pred", drop(0, "segmentation"), ["entry 0", "lacks 'segmentation'"]),
    ("res", "pred", put(0, "sent_id", 1.5), ["entry 0", "sent_id must be an id"]),
    ("res", "pred", put(0, "segmentation", "abc"), ["entry 0"]),
    ("res", "pred", put(0, "segmentation", {"size": [-5, 10], "counts": ""}), ["entry 0"]),
    ("res", "pred", put(0, "segmentation", BOMB), ["entry 0"]),
    ("rec", "pred", put(0, "bbox", [1, 2, 3]), ["entry 0", "bbox must be [x, y, w, h]"]),
    ("rec", "pred", put(0, "bbox", ["a", "b", "c", "d"]), ["entry 0", "bbox must be [x, y, w, h]"]),
    ("rec", "pred", put(1, "bbox", [0, 0, float("nan"), 4]), ["entry 1", "bbox must be [x, y, w, h]"]),
    ("entity", "pred", put(0, "score", "high"), ["entry 0", "score must be a finite number", "'high'"]),
    ("entity", "pred", put(0, "score", float("nan")), ["entry 0", "score must be a finite number"]),
    ("entity", "pred", put(3, "score", float("inf")), ["entry 3", "score must be a finite number"]),
    ("entity", "pred", drop(0, "image_id"), ["entry 0", "lacks 'image_id'"]),
    ("entity", "pred", lambda d: {"annotations": d}, ["expected a JSON list"]),
    ("entity", "pred", put(0, "segmentation", BOMB), ["entry 0"]),
    ("panoptic", "pred", lambda d: d["annotations"], ["expected a COCO-panoptic object"]),
    ("panoptic", "pred", put("annotations", 0, "segments_info", "none"), ["annotation 0", "segments_info"]),
    ("panoptic", "pred", drop("annotations", 0, "segments_info", 0, "id"), ["annotation 0", "segment 0", "lacks 'id'"]),
    ("panoptic", "pred", drop("annotations", 1, "image_id"), ["annotation 1", "lacks 'image_id'"]),
    ("panoptic", "pred", put("annotations", 0, "segments_info", 0, "category_id", "sky"),
     ["annotation 0", "segment 0", "category_id must be an integer"]),
    # ground truth: COCO panoptic JSON and its PNGs
    ("panoptic", GT["panoptic"], drop("annotations", 0, "segments_info"), ["annotation 0", "lacks 'segments_info'"]),
    ("panoptic", GT["panoptic"], drop("annotations", 0, "file_name"), ["annotation 0", "lacks 'file_name'"]),
    ("panoptic", GT["panoptic"], drop("annotations", 0, "segments_info", 2, "id"), ["annotation 0", "segment 2", "lacks 'id'"]),
    ("panoptic", GT["panoptic"], put("annotations", 0, "segments_info", {}), ["annotation 0", "segments_info"]),
    ("panoptic", GT["panoptic"], drop("images", 0, "height"), ["image 0", "lacks 'height'"]),
    ("panoptic", GT["panoptic"], put("images", 1, "height", "160"), ["image 1", "height must be a positive integer"]),
    ("panoptic", GT["panoptic"], put("images", 0, "width", -192), ["image 0", "width must be a positive integer"]),
    ("panoptic", GT["panoptic"], drop("images", 0, "id"), ["image 0", "lacks 'id'"]),
    ("panoptic", GT["panoptic"], put("images", 0, "height", 10**7), ["image 1", "max_image_pixels"]),
    ("panoptic", GT["panoptic"], lambda d: [d], ["expected a COCO-panoptic JSON object"]),
    ("panoptic", PANOPTIC_PNG, lambda p: p.unlink(), ["no such file", "image 1"]),
    ("panoptic", PANOPTIC_PNG, lambda p: save_id_map_png(p, np.zeros((10, 10), np.int64)), ["is 10x10", "192x160"]),
    ("panoptic", PANOPTIC_PNG, _png_stray, ["[999]", "segments_info of image 1"]),
    ("png", PANOPTIC_PNG, _png_stray, ["[999]", "segments_info of image 1"]),
    # ground truth: PNG narratives
    ("png", GT["png"], drop(0, "caption"), ["entry 0", "lacks 'caption'"]),
    ("png", GT["png"], put(1, "segments", "all of them"), ["entry 1", "segments must be a list"]),
    ("png", GT["png"], put(0, "segments", 0, "segment_ids", ["sky"]), ["entry 0", "segment 0", "segment_ids must be"]),
    ("nouns", GT["nouns"], lambda d: {"narratives": d}, ["expected a JSON list"]),
    # ground truth: RefCOCO refs and instances
    ("res", GT["res"], put(0, "sentences", "the orange hexagon"), ["ref 0", "sentences must be a list"]),
    ("rec", GT["rec"], drop(1, "ann_id"), ["ref 1", "lacks 'ann_id'"]),
    ("res", GT["res"], drop(0, "sentences", 0, "sent_id"), ["ref 0", "sentence 0", "lacks 'sent_id'"]),
    ("rec", "refcoco_val/instances.json", put("annotations", 0, "bbox", [1, 2]), ["annotation 0", "bbox must be"]),
    ("res", "refcoco_val/instances.json", put("images", 0, "height", "tall"), ["image 0", "height must be"]),
    ("res", "refcoco_val/instances.json", every("annotations", "segmentation", BOMB), ["annotation"]),
    # ground truth: EntitySeg instances
    ("entity", GT["entity"], drop("images", 0, "width"), ["image 0", "lacks 'width'"]),
    ("entity", GT["entity"], put("annotations", 2, "image_id", [1]), ["annotation 2", "image_id must be an id"]),
    ("entity", GT["entity"], put("annotations", 0, "segmentation", BOMB), ["annotation"]),
    ("entity", GT["entity"], lambda d: d["annotations"], ["expected a COCO object"]),
]


def _case_id(case: tuple) -> str:
    task, target, _, fragments = case
    return f"{task}-{Path(target).name}-{fragments[-1]}"


def _write(path: Path, data: Any) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _files(task: str, oracle: dict[str, Any], sw_root: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A private copy of the split, the task's oracle prediction file, and the options to score it."""
    root = tmp_path / "sw"
    shutil.copytree(sw_root, root)
    pred = tmp_path / f"pred_{task}.json"
    _write(pred, oracle[task])
    options = [f"pred_dir={oracle['pred_dir']}"] if task == "panoptic" else []
    return root, pred, options


def _score(task: str, gt: Path, pred: Path, options: list[str]) -> int:
    return main(["score", task, "--gt", str(gt), "--pred", str(pred), *options])


@pytest.mark.parametrize("task", sorted(GT))
def test_valid_files_still_score(task, oracle, sw_root, tmp_path, capsys):
    root, pred, options = _files(task, oracle, sw_root, tmp_path)
    assert _score(task, root / GT[task], pred, options) == 0
    out = capsys.readouterr()
    assert "1.0000" in out.out and "error" not in out.err


@pytest.mark.parametrize("task, target, change, fragments", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_file_is_one_clear_error(task, target, change, fragments, oracle, sw_root, tmp_path, capsys):
    root, pred, options = _files(task, oracle, sw_root, tmp_path)
    broken = pred if target == "pred" else root / target
    if broken.suffix == ".png":
        change(broken)
    else:
        _write(broken, change(copy.deepcopy(json.loads(broken.read_text()))))
    rc = _score(task, root / GT[task], pred, options)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert rc == 2, err
    assert err.startswith("esgkit: error:"), err
    assert broken.name in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_corpus_is_large_enough():
    assert len(CASES) >= 25 and {c[0] for c in CASES} == set(GT)


# -------------------------------------------------------------------------------------- fuzzing

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats() | st.text(max_size=6)
    | st.just({"size": [100000, 100000], "counts": "0"}) | st.just({"size": [2, 2], "counts": [1, 2, 3]}),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["image_id", "segmentation", "score", "phrase_index", "narrative_index", "sent_id", "bbox", "phrases",
         "annotations", "segments_info", "id", "category_id", "file_name", "size", "counts"]), inner, max_size=4),
    max_leaves=12)


def _mutate(data: Any, draw: Any) -> Any:
    """``data`` with one random node (found by walking random keys/indices) replaced by random JSON."""
    path, node = [], data
    while isinstance(node, (list, dict)) and node and draw(st.integers(0, 3)) > 0:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    value = draw(JSON_VALUES)
    if not path:
        return value
    target = data
    for key in path[:-1]:
        target = target[key]
    if draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]  # a missing field
    else:
        target[path[-1]] = value
    return data


@FUZZ
@given(task=st.sampled_from(sorted(GT)), data=st.data())
def test_fuzz_prediction_files_score_or_fail_clearly(task, data, oracle, sw_root, fuzz_root, capsys):
    pred = fuzz_root / f"pred_{task}.json"
    _write(pred, _mutate(copy.deepcopy(oracle[task]), data.draw))
    options = [f"pred_dir={oracle['pred_dir']}"] if task == "panoptic" else []
    rc = _score(task, sw_root / GT[task], pred, options)
    err = capsys.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err and "internal error" not in err, err
    assert rc == 0 or err.startswith("esgkit: error:"), err


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")
