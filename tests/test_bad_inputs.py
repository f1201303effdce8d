"""The bad-input corpus of the hardening issue: what a careless or hostile user gives esgkit.

Every case runs the ``esgkit`` command in-process (or, for plugins, in a fresh interpreter) and must
end in one of the outcomes it expects:

* ``error``   — exit 2, one ``esgkit: error:`` line naming the file or key (``says``), no traceback;
* ``warning`` — exit 0 with an ``esgkit: warning:`` line (an empty result is never silent);
* ``ok``      — exit 0, and the case's ``check`` finds the result right (no silent corruption).

Never: a traceback or ``internal error``, a hang (each case has a time limit), a secret echoed, or a
file of the user's changed. The module prints the counts by class and outcome at the end;
``ESGKIT_CORPUS_REPORT=path.json`` also writes them to a file.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import textwrap
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from esgkit.core.cli import main
from esgkit.core.io import load_image, save_id_map_png, save_image
from esgkit.core.types import encode_rle

TIME_LIMIT_S = 120  # a case that runs longer has hung: every bad input here must be refused quickly
SECRET = "esgkit-corpus-secret-7f3a9c"


# --------------------------------------------------------------------------- the shared files


class Assets:
    """The valid files the cases corrupt: a photo, a ShapesWorld scene with its id map, GT files."""

    def __init__(self, root: Path) -> None:
        import skimage.data
        from PIL import Image

        from esgkit.datasets.shapesworld import generate
        from esgkit.evaluation.oracle import oracle_predictions

        self.root = root
        self.photo = root / "photo.png"
        save_image(self.photo, np.asarray(Image.fromarray(skimage.data.astronaut()).resize((96, 96))))
        self.sw = generate(root / "sw", images=2, seed=5, size="256x256", split="val", progress=False)
        self.scene = self.sw / "val" / "000000000001.jpg"
        self.masks = self.sw / "annotations" / "panoptic_val" / "000000000001.png"
        self.gt = {"png": self.sw / "annotations/png_coco_val.json", "res": self.sw / "refcoco_val/refs(unc).p",
                   "rec": self.sw / "refcoco_val", "entity": self.sw / "annotations/entityseg_val.json",
                   "panoptic": self.sw / "annotations/panoptic_val.json"}
        self.pred = {t: oracle_predictions(t, self.gt[t], root / "oracle" / f"{t}.json")
                     for t in ("png", "entity", "res", "panoptic")}
        self.secret_file = root / "outside" / "passwd.yaml"
        self.secret_file.parent.mkdir()
        self.secret_file.write_text(f"root: {SECRET}\n")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    return Assets(tmp_path_factory.mktemp("corpus"))


# --------------------------------------------------------------------------- the cases


@dataclass
class Spec:
    """What one case runs: ``argv`` for ``esgkit`` (or ``api``, a call), files that must not change,
    a check of a successful result, extra environment, and whether to run it in a fresh interpreter."""

    argv: list[str] = field(default_factory=list)
    protect: list[Path] = field(default_factory=list)
    check: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    api: Callable[[], Any] | None = None
    subprocess: bool = False


@dataclass
class Case:
    name: str
    cls: str
    expect: str
    says: tuple[str, ...]
    make: Callable[[Assets, Path], Spec]


CASES: list[Case] = []


def case(cls: str, expect: str, *says: str) -> Callable:
    def register(make: Callable[[Assets, Path], Spec]) -> Callable:
        CASES.append(Case(make.__name__, cls, expect, says, make))
        return make

    return register


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def png_header_only(width: int, height: int, mode: int = 0, depth: int = 1) -> bytes:
    """A PNG whose header claims width × height but whose data is a few bytes: a decompression bomb
    as far as any reader that trusts the header is concerned."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def run_colormap(a: Assets, d: Path, image: Path, masks: Path | None = None) -> list[str]:
    argv = ["run", "colormap", "--image", str(image), "--out", str(d / "out")]
    return argv + (["--masks", str(masks)] if masks else [])


def run_on_image(a: Assets, d: Path, image: Path) -> list[str]:
    """``esgkit run colormap`` on a readable image, with one entity covering it (its own id map)."""
    from PIL import Image

    with Image.open(image) as im:
        width, height = im.size
    masks = d / "one_entity.png"
    save_id_map_png(masks, np.ones((height, width), np.int64))
    return run_colormap(a, d, image, masks)


def masks_json(a: Assets, d: Path, entries: Any, raw: bytes | None = None) -> Spec:
    path = write(d / "masks.json", raw if raw is not None else json.dumps(entries))
    return Spec(run_colormap(a, d, a.scene, path))


def good_rle() -> dict:
    m = np.zeros((256, 256), bool)
    m[10:50, 10:50] = True
    return encode_rle(m)


# ---- images


@case("images", "error", "no such file")
def image_missing(a, d):
    return Spec(run_colormap(a, d, d / "nope.png"))


@case("images", "error", "empty.png")
def image_zero_bytes(a, d):
    return Spec(run_colormap(a, d, write(d / "empty.png", b"")))


@case("images", "error", "text.png")
def image_is_text(a, d):
    return Spec(run_colormap(a, d, write(d / "text.png", "hello, not an image\n")))


@case("images", "error", "half.png")
def image_truncated(a, d):
    data = a.photo.read_bytes()
    return Spec(run_colormap(a, d, write(d / "half.png", data[: len(data) // 2])))


@case("images", "error", "folder")
def image_is_folder(a, d):
    (d / "folder").mkdir()
    return Spec(run_colormap(a, d, d / "folder"))


@case("images", "error", "bomb.png", "exceeds", "--max-image-pixels")
def image_decompression_bomb(a, d):
    return Spec(run_colormap(a, d, write(d / "bomb.png", png_header_only(100_000, 100_000))))


@case("images", "error", "bomb.png")
def image_bomb_with_limit_raised(a, d):
    # the user raised the bound: the header-only file is then read and found broken, still no traceback
    spec = Spec(run_colormap(a, d, write(d / "bomb.png", png_header_only(20_000, 20_000))))
    spec.argv += ["--max-image-pixels", "1e9"]
    return spec


@case("images", "error", "bomb.png", "exceeds")
def image_bomb_rgb(a, d):
    return Spec(run_colormap(a, d, write(d / "bomb.png", png_header_only(70_000, 70_000, mode=2, depth=8))))


@case("images", "ok")
def image_16bit_png(a, d):
    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = d / "ramp16.png"
    Image.fromarray(ramp).save(path)

    def check():
        rgb = load_image(path)
        assert rgb.shape == (16, 256, 3) and rgb.dtype == np.uint8
        row = rgb[0, :, 0].astype(int)
        assert (np.diff(row) >= 0).all() and row[0] <= 2 and row[-1] >= 253, "16-bit range squashed or clipped"
        assert len(np.unique(row)) > 200, "16-bit image clipped to 8 bits"

    return Spec(run_on_image(a, d, path), check=check)


@case("images", "ok")
def image_float_tiff(a, d):
    from PIL import Image

    ramp = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (8, 1))
    path = d / "ramp.tif"
    Image.fromarray(ramp, mode="F").save(path)

    def check():
        rgb = load_image(path)
        row = rgb[0, :, 0].astype(int)
        assert row[0] <= 2 and row[-1] >= 253 and len(np.unique(row)) > 100, "float image not scaled"

    return Spec(run_on_image(a, d, path), check=check)


@case("images", "error", "nan.tif")
def image_float_tiff_nan(a, d):
    from PIL import Image

    arr = np.full((8, 8), np.nan, np.float32)
    path = d / "nan.tif"
    Image.fromarray(arr, mode="F").save(path)
    return Spec(run_on_image(a, d, path))


@case("images", "ok")
def image_palette_with_transparency(a, d):
    from PIL import Image

    path = d / "pal.png"
    Image.open(a.photo).convert("P").save(path, transparency=0)

    def check():
        rgb = load_image(path)
        assert rgb.shape == (96, 96, 3) and rgb.std() > 10

    return Spec(run_on_image(a, d, path), check=check)


@case("images", "ok")
def image_cmyk_jpeg(a, d):
    from PIL import Image

    path = d / "cmyk.jpg"
    Image.open(a.photo).convert("CMYK").save(path)

    def check():
        rgb = load_image(path).astype(int)
        ref = load_image(a.photo).astype(int)
        assert np.abs(rgb - ref).mean() < 20, "CMYK not converted to RGB"

    return Spec(run_on_image(a, d, path), check=check)


@case("images", "ok")
def image_rgba(a, d):
    from PIL import Image

    path = d / "rgba.png"
    Image.open(a.photo).convert("RGBA").save(path)
    return Spec(run_on_image(a, d, path), check=lambda: np.testing.assert_array_equal(load_image(path), load_image(a.photo)))


# ---- masks


@case("masks", "error", "masks.json", "-5")
def rle_negative_size(a, d):
    return masks_json(a, d, [{"segmentation": {"size": [-5, 256], "counts": "abc"}}])


@case("masks", "error", "masks.json", "exceeds")
def rle_huge_size(a, d):
    return masks_json(a, d, [{"segmentation": {"size": [100000, 100000], "counts": "0"}}])


@case("masks", "error", "masks.json", "image")
def rle_other_size_than_image(a, d):
    m = np.ones((64, 64), bool)
    return masks_json(a, d, [{"segmentation": encode_rle(m)}])


@case("masks", "error", "masks.json")
def segmentation_is_string(a, d):
    return masks_json(a, d, [{"segmentation": "a mask, honestly"}])


@case("masks", "error", "masks.json")
def segmentation_is_null(a, d):
    return masks_json(a, d, [{"segmentation": None}])


@case("masks", "error", "masks.json")
def rle_counts_is_number(a, d):
    return masks_json(a, d, [{"segmentation": {"size": [256, 256], "counts": 12}}])


@case("masks", "error", "masks.json")
def rle_uncompressed_counts_do_not_sum(a, d):
    return masks_json(a, d, [{"segmentation": {"size": [256, 256], "counts": [5, 7]}}])


@case("masks", "error", "masks.json")
def mask_json_deeply_nested(a, d):
    return masks_json(a, d, None, raw=b"[" * 100_000 + b"]" * 100_000)


@case("masks", "error", "masks.json", "UTF-8")
def mask_json_not_utf8(a, d):
    return masks_json(a, d, None, raw=b'[{"segmentation": "\xff\xfe\xfd"}]')


@case("masks", "error", "masks.json")
def mask_json_top_level_number(a, d):
    return masks_json(a, d, 42)


@case("masks", "error", "masks.json", "score")
def mask_score_is_word(a, d):
    return masks_json(a, d, [{"segmentation": good_rle(), "score": "high"}])


@case("masks", "error", "masks.json", "id")
def mask_id_is_word(a, d):
    return masks_json(a, d, [{"segmentation": good_rle(), "id": "seven"}])


@case("masks", "error", "masks.json", "7")
def mask_duplicate_ids(a, d):
    return masks_json(a, d, [{"segmentation": good_rle(), "id": 7}, {"segmentation": good_rle(), "id": 7}])


@case("masks", "error", "masks.json", "image size")
def mask_json_empty_list(a, d):
    return masks_json(a, d, [])


@case("masks", "error", "masks.txt")
def mask_unknown_extension(a, d):
    return Spec(run_colormap(a, d, a.scene, write(d / "masks.txt", "1 2 3")))


@case("masks", "error", "unique.png", "entities")
def idmap_every_pixel_its_own_entity(a, d):
    ids = np.arange(1, 256 * 256 + 1).reshape(256, 256)
    path = d / "unique.png"
    save_id_map_png(path, ids)
    return Spec(run_colormap(a, d, a.scene, path))


@case("masks", "error", "photo.png")
def photo_passed_as_masks(a, d):
    from PIL import Image

    path = d / "photo.png"
    Image.open(a.scene).save(path)
    return Spec(run_colormap(a, d, a.scene, path))


@case("masks", "warning", "zero.png")
def idmap_all_zero(a, d):
    path = d / "zero.png"
    save_id_map_png(path, np.zeros((256, 256), np.int64))
    return Spec(run_colormap(a, d, a.scene, path))


@case("masks", "error", "bomb.png", "exceeds")
def idmap_decompression_bomb(a, d):
    return Spec(run_colormap(a, d, a.scene, write(d / "bomb.png", png_header_only(100_000, 100_000, mode=2, depth=8))))


@case("masks", "error", "small.png", "image")
def idmap_other_size_than_image(a, d):
    path = d / "small.png"
    save_id_map_png(path, np.ones((32, 32), np.int64))
    return Spec(run_colormap(a, d, a.scene, path))


# ---- captions


def run_gella(a: Assets, d: Path, caption: str, config: str = "gella_tiny_trained") -> list[str]:
    return ["run", config, "--image", str(a.scene), "--masks", str(a.masks), "--caption", caption,
            "--out", str(d / "out")]


@case("captions", "error", "caption", "empty")
def caption_empty(a, d):
    return Spec(run_gella(a, d, ""))


@case("captions", "error", "caption", "empty")
def caption_whitespace(a, d):
    return Spec(run_gella(a, d, "   \t  "))


@case("captions", "error", "caption", "control")
def caption_control_character(a, d):
    return Spec(run_gella(a, d, "a red\x00 circle\x07"))


@case("captions", "warning", "noun")
def caption_without_nouns(a, d):
    return Spec(run_gella(a, d, "... , ; !"))  # punctuation only: nothing the tagger can take for a noun


@case("captions", "error", "caption", "colormap")
def caption_to_pipeline_without_language(a, d):
    return Spec(run_colormap(a, d, a.scene, a.masks) + ["--caption", "a red circle"])


@case("captions", "warning", "gella_tiny")
def untrained_preset_says_so(a, d):
    return Spec(run_gella(a, d, "two red circles", config="gella_tiny"))


# ---- configs


def config_file(d: Path, text: str, name: str = "bad.yaml") -> Path:
    return write(d / "cfg" / name, textwrap.dedent(text))


@case("configs", "error", "defaults")
def defaults_escape_to_passwd(a, d):
    rel = os.path.relpath(a.secret_file, d / "cfg")
    return Spec(["config", "show", str(config_file(d, f"defaults: [{rel}]\nsegmenter: {{name: ground_truth}}\n"))])


@case("configs", "error", "defaults")
def defaults_absolute_path_outside(a, d):
    return Spec(["config", "show", str(config_file(d, f"defaults: [{a.secret_file}]\n"))])


@case("configs", "error", "defaults")
def defaults_not_yaml(a, d):
    write(d / "cfg" / "notes.txt", f"secret: {SECRET}\n")
    return Spec(["config", "show", str(config_file(d, "defaults: [notes.txt]\n"))])


@case("configs", "error", "ESGKIT_CORPUS_SECRET")
def env_resolver_reads_secret(a, d):
    cfg = config_file(d, "defaults: [colormap]\ncolorizer: {name: random, seed: 0, note: '${oc.env:ESGKIT_CORPUS_SECRET}'}\n")
    return Spec(["config", "show", str(cfg), "--no-validate"], env={"ESGKIT_CORPUS_SECRET": SECRET})


@case("configs", "error", "ESGKIT_CORPUS_SECRET")
def env_resolver_in_override(a, d):
    return Spec(["config", "show", "colormap", "--no-validate", "colorizer.note=${oc.env:ESGKIT_CORPUS_SECRET}"],
                env={"ESGKIT_CORPUS_SECRET": SECRET})


@case("configs", "error", "a")
def interpolation_recursive(a, d):
    return Spec(["config", "show", str(config_file(d, "a: ${b}\nb: ${a}\n")), "--no-validate"])


@case("configs", "error", "colorizer.seed")
def interpolation_missing_key(a, d):
    return Spec(["config", "show", "colormap", "colorizer.seed=${nowhere.at_all}"])


@case("configs", "error", "segmenter")
def section_is_list(a, d):
    return Spec(["config", "show", str(config_file(d, "defaults: [colormap]\nsegmenter: [1, 2]\n"))])


@case("configs", "error", "segmenter")
def section_is_int(a, d):
    return Spec(["config", "show", str(config_file(d, "pipeline: {name: colormap}\nsegmenter: 5\ncolorizer: {name: random}\n"))])


@case("configs", "error", "pipeline")
def pipeline_is_string(a, d):
    return Spec(["config", "show", str(config_file(d, "pipeline: colormap_please\n"))])


@case("configs", "error", "=5")
def override_empty_key(a, d):
    return Spec(["config", "show", "colormap", "=5"])


@case("configs", "error", "segmenter..name")
def override_doubled_dot(a, d):
    return Spec(["config", "show", "colormap", "segmenter..name=sam"])


@case("configs", "error", ".name")
def override_leading_dot(a, d):
    return Spec(["config", "show", "colormap", ".name=sam"])


@case("configs", "error", "crop_ratoi")
def override_unknown_key(a, d):
    return Spec(["config", "show", "cropformer_tiny", "segmenter.crop_ratoi=0.5"])


@case("configs", "error", "segmenter.short_side")
def override_wrong_type(a, d):
    return Spec(["config", "show", "cropformer_tiny", "segmenter.short_side=big"])


@case("configs", "error", "segmenter.name", "Did you mean")
def unknown_component_name(a, d):
    return Spec(["config", "show", "colormap", "segmenter.name=cropformr"])


@case("configs", "error", "bad.yaml", "line")
def yaml_syntax_error(a, d):
    return Spec(["config", "show", str(config_file(d, f"segmenter: {{name: x\n  key: {SECRET}: : :\n"))])


@case("configs", "error", "latin.yaml", "UTF-8")
def config_not_utf8(a, d):
    return Spec(["config", "show", str(write(d / "cfg" / "latin.yaml", b"segmenter: {name: \xe9\xff}\n"))])


@case("configs", "error", "cfgdir")
def config_is_folder(a, d):
    (d / "cfgdir.yaml").mkdir()
    return Spec(["config", "show", str(d / "cfgdir.yaml")])


@case("configs", "error", "laughs.yaml")
def yaml_billion_laughs(a, d):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return Spec(["config", "show", str(write(d / "cfg" / "laughs.yaml", "\n".join(lines) + "\n")), "--no-validate"])


@case("configs", "error", "nowhere_config")
def config_missing(a, d):
    return Spec(["config", "show", "nowhere_config"])


# ---- prediction and ground-truth files for `esgkit score`


def score(a: Assets, task: str, pred: Path, gt: Path | None = None) -> list[str]:
    return ["score", task, "--gt", str(gt or a.gt[task]), "--pred", str(pred)]


def corrupt(a: Assets, d: Path, task: str, edit: Callable[[list], Any]) -> Path:
    data = json.loads(a.pred[task].read_text())
    return write(d / f"{task}_pred.json", json.dumps(edit(data)))


def drop(key: str) -> Callable[[list], list]:
    def edit(data: list) -> list:
        data[0].pop(key)
        return data

    return edit


def set_field(key: str, value: Any) -> Callable[[list], list]:
    def edit(data: list) -> list:
        data[0][key] = value
        return data

    return edit


@case("scores", "error", "panoptic_pred.json", "category_id")
def pred_segment_without_category_id(a, d):
    import shutil

    pred = d / "panoptic_pred.json"
    shutil.copytree(a.pred["panoptic"].with_suffix(""), pred.with_suffix(""))
    data = json.loads(a.pred["panoptic"].read_text())
    data["annotations"][0]["segments_info"][0].pop("category_id")
    write(pred, json.dumps(data))
    return Spec(score(a, "panoptic", pred))


@case("scores", "ok")
def pred_entity_without_category_id(a, d):
    # class-agnostic APe needs no class: a file without category_id scores like the oracle
    pred = corrupt(a, d, "entity", lambda data: [{k: v for k, v in e.items() if k != "category_id"} for e in data])
    out = d / "m.json"
    return Spec(score(a, "entity", pred) + ["--out", str(out)],
                check=lambda: np.testing.assert_allclose(json.loads(out.read_text())["metrics"]["APe"], 1.0))


@case("scores", "error", "entity_pred.json", "score")
def pred_score_is_word(a, d):
    return Spec(score(a, "entity", corrupt(a, d, "entity", set_field("score", "high"))))


@case("scores", "error", "entity_pred.json", "image_id")
def pred_image_id_is_list(a, d):
    return Spec(score(a, "entity", corrupt(a, d, "entity", set_field("image_id", [1, 2]))))


@case("scores", "error", "png_pred.json", "exceeds")
def pred_rle_bomb(a, d):
    return Spec(score(a, "png", corrupt(a, d, "png", set_field("segmentation", {"size": [100000, 100000], "counts": "0"}))))


@case("scores", "error", "png_pred.json")
def pred_segmentation_is_string(a, d):
    return Spec(score(a, "png", corrupt(a, d, "png", set_field("segmentation", "everything"))))


@case("scores", "error", "deep.json")
def pred_deeply_nested(a, d):
    return Spec(score(a, "png", write(d / "deep.json", b"[" * 100_000 + b"]" * 100_000)))


@case("scores", "error", "res_pred.json")
def pred_not_a_list(a, d):
    return Spec(score(a, "res", corrupt(a, d, "res", lambda data: {"predictions": data})))


@case("scores", "error", "res_pred.json", "sent_id")
def pred_missing_sent_id(a, d):
    return Spec(score(a, "res", corrupt(a, d, "res", drop("sent_id"))))


@case("scores", "error", "gt.json", "height")
def gt_image_without_height(a, d):
    data = json.loads(a.gt["entity"].read_text())
    data["images"][0].pop("height")
    gt = write(d / "gt.json", json.dumps(data))
    return Spec(score(a, "entity", a.pred["entity"], gt=gt))


@case("scores", "error", "gt.json", "id")
def gt_annotation_without_id(a, d):
    data = json.loads(a.gt["entity"].read_text())
    data["annotations"][0].pop("id")
    gt = write(d / "gt.json", json.dumps(data))
    return Spec(score(a, "entity", a.pred["entity"], gt=gt))


@case("scores", "error", "sentences")
def gt_sentences_is_string(a, d):
    import shutil

    gt = d / "refcoco"
    shutil.copytree(a.gt["rec"], gt)
    (gt / "refs(unc).p").unlink()
    refs = json.loads((gt / "refs(unc).json").read_text())
    refs[0]["sentences"] = "a red circle"
    (gt / "refs(unc).json").write_text(json.dumps(refs))
    return Spec(["score", "rec", "--gt", str(gt), "--pred", str(write(d / "rec.json", "[]"))])


@case("scores", "error", "png_coco_val.json")
def gt_png_narrative_without_segments(a, d):
    import shutil

    gt_dir = d / "gt"
    shutil.copytree(a.gt["png"].parent, gt_dir)
    gt = gt_dir / "png_coco_val.json"
    data = json.loads(gt.read_text())
    data[0].pop("segments")
    gt.write_text(json.dumps(data))
    return Spec(score(a, "png", a.pred["png"], gt=gt))


@case("scores", "error", "missing.json", "no such file")
def pred_missing_file(a, d):
    return Spec(score(a, "png", d / "missing.json"))


# ---- output folders


@case("outputs", "error", "pred")
def score_out_onto_prediction_file(a, d):
    pred = write(d / "pred.json", a.pred["entity"].read_bytes())
    return Spec(score(a, "entity", pred) + ["--out", str(pred)], protect=[pred])


@case("outputs", "error", "overlay.png")
def run_over_users_overlay(a, d):
    mine = write(d / "out" / "overlay.png", a.photo.read_bytes())
    return Spec(run_colormap(a, d, a.scene, a.masks), protect=[mine])


@case("outputs", "error", "config.json")
def train_into_users_folder(a, d):
    run = d / "run"
    mine = [write(run / "config.json", '{"mine": true}'), write(run / "metrics.jsonl", '{"step": 1}\n')]
    return Spec(["train", "colormap", "--data", str(a.sw), "--out", str(run)], protect=mine)


@case("outputs", "error", "out")
def run_out_is_a_file(a, d):
    out = write(d / "out", "I am a file\n")
    return Spec(run_colormap(a, d, a.scene, a.masks), protect=[out])


@case("outputs", "error", "folder")
def score_out_is_a_folder(a, d):
    (d / "metrics").mkdir()
    return Spec(score(a, "entity", a.pred["entity"]) + ["--out", str(d / "metrics")])


@case("outputs", "error", "folder")
def data_out_is_a_file(a, d):
    out = write(d / "data", "mine\n")
    return Spec(["data", "shapesworld", str(out), "--images", "1", "--size", "256x256", "--workers", "1"], protect=[out])


@case("outputs", "error", "demo")
def demo_into_users_folder(a, d):
    mine = write(d / "demo" / "esg.png", a.photo.read_bytes())
    return Spec(["demo", "--out", str(d / "demo")], protect=[mine])


# ---- plugins (a fresh interpreter, with a fake installed distribution)


def fake_plugin(d: Path, name: str, body: str) -> dict[str, str]:
    site = d / "site"
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[esgkit]\n{name} = {name}_mod\n")
    (site / f"{name}_mod.py").write_text(textwrap.dedent(body))
    return {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}


@case("plugins", "warning", "corpus_raises")
def plugin_command_hook_raises(a, d):
    env = fake_plugin(d, "corpus_raises", """
        from esgkit.core import hookimpl

        @hookimpl
        def esgkit_register_commands(subparsers):
            raise RuntimeError("broken on purpose")
    """)
    return Spec(["list"], env=env, subprocess=True)


@case("plugins", "warning", "corpus_clash", "run")
def plugin_command_clashes_with_builtin(a, d):
    env = fake_plugin(d, "corpus_clash", """
        from esgkit.core import hookimpl

        @hookimpl
        def esgkit_register_commands(subparsers):
            subparsers.add_parser("run", help="hijacked").set_defaults(func=lambda args: 99)
    """)
    return Spec(["list"], env=env, subprocess=True)


# ---- process settings


@case("settings", "error", "--threads")
def threads_zero(a, d):
    return Spec(["list", "--threads", "0"])


@case("settings", "error", "ESGKIT_THREADS")
def threads_env_not_a_number(a, d):
    return Spec(["list"], env={"ESGKIT_THREADS": "many"})


@case("settings", "error", "--max-entities")
def limit_negative(a, d):
    return Spec(["list", "--max-entities", "-1"])


@case("settings", "error", "ESGKIT_MAX_IMAGE_PIXELS")
def limit_env_not_a_number(a, d):
    return Spec(run_colormap(a, d, a.scene, a.masks), env={"ESGKIT_MAX_IMAGE_PIXELS": "lots"})


# --------------------------------------------------------------------------- running them

OUTCOMES: Counter = Counter()


class Hung(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise Hung()


def run_in_process(argv: list[str], env: dict[str, str], capsys) -> tuple[str, int, str]:
    """(outcome, rc, stderr): outcome is 'hang' or 'raised' when main did not return."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors exit 2 with "esgkit: error:"
        rc = exc.code if isinstance(exc.code, int) else 2
    except Hung:
        return "hang", -1, capsys.readouterr().err
    except BaseException as exc:  # noqa: BLE001  an exception escaping main is a traceback for the user
        return "raised", -1, f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return "", rc, capsys.readouterr().err


def run_subprocess(argv: list[str], env: dict[str, str]) -> tuple[str, int, str]:
    import subprocess

    try:
        res = subprocess.run([sys.executable, "-m", "esgkit.core.cli", *argv], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        return "hang", -1, ""
    return "", res.returncode, res.stderr + res.stdout


def classify(c: Case, spec: Spec, raised: str, rc: int, err: str, digests: dict[Path, bytes]) -> tuple[str, str]:
    """(outcome, why): outcome is the case's expectation when met, else what went wrong."""
    if raised:
        return raised, err
    if "Traceback" in err or "internal error" in err:
        return "traceback", err
    if SECRET in err:
        return "secret echoed", err
    if any(p.read_bytes() != before if p.exists() else True for p, before in digests.items()):
        return "user file lost", err
    if c.expect == "error":
        if rc != 2 or "esgkit: error:" not in err:
            return "silent", f"rc {rc}, expected a clear error; stderr: {err[-400:]}"
    elif rc != 0:
        return "unexpected error", err
    elif c.expect == "warning" and "esgkit: warning:" not in err:
        return "silent", f"no warning; stderr: {err[-400:]}"
    missing = [s for s in c.says if s.lower() not in err.lower()]
    if missing:
        return "unclear message", f"message lacks {missing}: {err[-400:]}"
    if spec.check is not None:
        try:
            spec.check()
        except AssertionError as exc:
            return "silent corruption", str(exc)
    return c.expect, ""


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    lines = [f"bad-input corpus: {sum(OUTCOMES.values())} cases"]
    for (cls, outcome), n in sorted(OUTCOMES.items()):
        lines.append(f"  {cls:10s} {outcome:18s} {n}")
    print("\n" + "\n".join(lines))
    target = os.environ.get("ESGKIT_CORPUS_REPORT")
    if target:
        Path(target).write_text(json.dumps({f"{c}/{o}": n for (c, o), n in sorted(OUTCOMES.items())}, indent=1))


def test_corpus_is_large_and_covers_every_class():
    counts = Counter(c.cls for c in CASES)
    assert len(CASES) >= 60, len(CASES)
    assert set(counts) >= {"images", "masks", "captions", "configs", "scores", "outputs", "plugins", "settings"}
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input(c: Case, assets: Assets, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = c.make(assets, tmp_path)
    digests = {p: p.read_bytes() for p in spec.protect}
    if spec.subprocess:
        raised, rc, err = run_subprocess(spec.argv, spec.env)
    else:
        raised, rc, err = run_in_process(spec.argv, spec.env, capsys)
    outcome, why = classify(c, spec, raised, rc, err, digests)
    OUTCOMES[(c.cls, outcome)] += 1
    assert outcome == c.expect, f"{c.name}: {outcome}: {why}"
