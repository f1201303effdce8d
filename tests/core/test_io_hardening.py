"""Hostile and odd inputs to the image and entity-mask readers (the hardening issue): each ends in a
valid result or one InputError naming the file, the problem and the fix, never another exception."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from esgkit.core.errors import EsgkitError, InputError
from esgkit.core.io import load_id_map_png, load_image, load_masks
from esgkit.core.types import EntityMasks, Grounding, check_rle, decode_rle, encode_rle
from esgkit.datasets.common import segmentation_to_mask

HINT = "--max-image-pixels N or ESGKIT_MAX_IMAGE_PIXELS=N"


def png_header_only(width: int, height: int, mode: int = 0, depth: int = 1) -> bytes:
    """A PNG whose header claims width × height over a few bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


RLE = encode_rle(np.eye(3, 4, dtype=bool))  # a valid 3x4 (H, W) mask


# ---------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("size", [(20_000, 20_000), (100_000, 100_000)])
def test_bomb_png_is_refused_from_its_header(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(*size))
    saved = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError) as err:
        load_image(path)
    msg = str(err.value)
    assert str(path) in msg and f"{size[0] * size[1]:,} pixels" in msg and "268,435,456" in msg and HINT in msg
    assert Image.MAX_IMAGE_PIXELS == saved, "Pillow's global bomb limit must be restored"


def test_image_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ESGKIT_MAX_IMAGE_PIXELS", "100")
    for w, h in [(11, 10), (30, 30)]:  # just over (Pillow warns) and far over (Pillow errors): one message
        Image.new("L", (w, h)).save(tmp_path / "a.png")
        with pytest.raises(InputError, match=rf"a\.png: {w * h:,} pixels exceeds the limit of 100 .*{HINT}"):
            load_image(tmp_path / "a.png")
    Image.new("L", (10, 10)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (10, 10, 3)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.array([[0, 1000, 30000, 65535]], np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 4, 117, 255] and (rgb[..., 0] == rgb[..., 2]).all()


def test_32_bit_int_images(tmp_path):
    Image.fromarray(np.array([[0, 257, 65535]], np.int32)).save(tmp_path / "i.tif")  # 16-bit range: / 257
    assert load_image(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 1, 255]
    Image.fromarray(np.array([[-50, 0, 205]], np.int32)).save(tmp_path / "n.tif")  # otherwise min-max
    assert load_image(tmp_path / "n.tif")[0, :, 0].tolist() == [0, 50, 255]


def test_float_images(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    assert load_image(tmp_path / "unit.tif")[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[-5.0, 0.0, 5.0]], np.float32)).save(tmp_path / "wide.tif")
    assert load_image(tmp_path / "wide.tif")[0, :, 0].tolist() == [0, 128, 255]
    for bad in (np.nan, np.inf):
        Image.fromarray(np.array([[0.0, bad]], np.float32)).save(tmp_path / "nan.tif")
        with pytest.raises(InputError, match=r"nan\.tif: the float image holds NaN or infinite values; save it"):
            load_image(tmp_path / "nan.tif")


def test_colour_modes_become_rgb(tmp_path):
    red = (200, 10, 20)
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 0, *red] + [0] * 762)
    pal.paste(1, (0, 0, 2, 4))
    pal.save(tmp_path / "pal.png", transparency=0)
    rgb = load_image(tmp_path / "pal.png")
    assert rgb[0, 0].tolist() == list(red) and rgb[0, 3].tolist() == [0, 0, 0]
    Image.new("RGBA", (3, 2), (*red, 0)).save(tmp_path / "rgba.png")  # alpha dropped, colour kept
    assert (load_image(tmp_path / "rgba.png") == red).all()
    Image.new("LA", (3, 2), (77, 10)).save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 77).all()
    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    cmyk = load_image(tmp_path / "cmyk.jpg").astype(int)
    assert cmyk.shape == (2, 3, 3) and cmyk[0, 0, 0] > 240 and cmyk[0, 0, 1:].max() < 15
    one = Image.new("1", (3, 2))
    one.putpixel((1, 0), 1)
    one.save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png")[..., 0].tolist() == [[0, 255, 0], [0, 0, 0]]
    Image.new("L", (3, 2), 9).save(tmp_path / "l.png")
    assert (load_image(tmp_path / "l.png") == 9).all()


def test_multi_frame_image_gives_the_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"anim\.gif has 2 frames .*using the first"):
        rgb = load_image(tmp_path / "anim.gif")
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_truncated_empty_and_folder_images(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"half\.png: not a readable image, truncated or corrupt .*re-download"):
        load_image(tmp_path / "half.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"zero\.png: the file is empty \(0 bytes\)"):
        load_image(tmp_path / "zero.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match=r"dir\.png: is a folder; give an image file"):
        load_image(tmp_path / "dir.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match=r"text\.jpg: not a readable image"):
        load_image(tmp_path / "text.jpg")


# ------------------------------------------------------------------------------------ id-map masks


def test_id_map_bomb_is_refused(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(70_000, 70_000, mode=2, depth=8))
    with pytest.raises(InputError, match=rf"mask file .*bomb\.png: 4,900,000,000 pixels exceeds .*{HINT}"):
        load_masks(tmp_path / "bomb.png")


def test_photo_or_dense_id_map_is_refused_before_building_masks(tmp_path, monkeypatch):
    photo = np.random.default_rng(1).integers(0, 256, (128, 128, 3), np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(InputError, match=r"photo\.png: [\d,]+ entities exceed the limit of 4,096 .*--max-entities"):
        load_masks(tmp_path / "photo.png")
    monkeypatch.setenv("ESGKIT_MAX_ENTITIES", "5")
    with pytest.raises(InputError, match="id map: 99 entities exceed the limit of 5"):
        EntityMasks.from_id_map(np.arange(100).reshape(10, 10))


def test_a_mask_stack_past_max_masks_mb_is_refused_before_decoding(tmp_path, monkeypatch):
    """Legal counts and sizes can still multiply past the memory: 3000 entities of 2000² (12 GB)."""
    entry = {"segmentation": {"size": [2000, 2000], "counts": [4_000_000]}}  # all-background RLE, cheap to check
    (tmp_path / "many.json").write_text(json.dumps([{**entry, "id": k} for k in range(3000)]))
    with pytest.raises(InputError, match=r"many\.json: 3,000 masks of 2000x2000 need 11,444 MiB.*--max-masks-mb"):
        load_masks(tmp_path / "many.json")
    monkeypatch.setenv("ESGKIT_MAX_MASKS_MB", "1")
    with pytest.raises(InputError, match="max_masks_mb"):
        EntityMasks.from_id_map(np.arange(2000 * 600).reshape(2000, 600) % 4)
    assert len(EntityMasks.from_id_map(np.arange(100).reshape(10, 10) % 4)) == 3


def test_all_zero_id_map_warns_and_gives_no_entity(tmp_path):
    Image.new("L", (5, 4)).save(tmp_path / "zero.png")
    with pytest.warns(UserWarning, match=r"zero\.png holds no entity \(all pixels are 0\)"):
        masks = load_masks(tmp_path / "zero.png")
    assert len(masks) == 0 and masks.image_size == (4, 5)


def test_16_bit_id_map_keeps_its_values(tmp_path):
    ids = np.zeros((4, 5), np.uint16)
    ids[0, :2], ids[3, 4] = 300, 60000
    Image.fromarray(ids).save(tmp_path / "ids.png")
    assert (load_id_map_png(tmp_path / "ids.png") == ids).all()
    masks = load_masks(tmp_path / "ids.png")
    assert masks.ids.tolist() == [300, 60000] and masks.masks[0].sum() == 2
    with pytest.raises(InputError, match=r"masks in .*ids\.png are 5x4 \(WxH\) but the image is 6x4"):
        load_masks(tmp_path / "ids.png", image_size=(4, 6))


def test_id_map_of_a_non_integer_mode_is_refused(tmp_path):
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tif")
    (tmp_path / "f.png").write_bytes((tmp_path / "f.tif").read_bytes())  # a TIFF named .png still opens
    with pytest.raises(InputError, match=r"f\.png: a 'F' image cannot hold entity ids; write ids as"):
        load_masks(tmp_path / "f.png")


def test_id_map_with_alpha_uses_its_ids(tmp_path):
    Image.new("LA", (3, 2), (7, 255)).save(tmp_path / "la.png")
    assert load_masks(tmp_path / "la.png").ids.tolist() == [7]
    Image.new("RGBA", (3, 2), (4, 1, 0, 255)).save(tmp_path / "rgba.png")
    assert load_masks(tmp_path / "rgba.png").ids.tolist() == [4 + 256]


def test_duplicate_entity_ids_are_named():
    with pytest.raises(InputError, match=r"unique; id\(s\) 3, 9 appear more than once"):
        EntityMasks(np.zeros((5, 2, 2), bool), ids=[3, 9, 3, 1, 9])


# -------------------------------------------------------------------------------------- JSON masks


BAD_ENTRIES = [
    ({"segmentation": {"size": [-3, 4], "counts": "4"}}, r"RLE size \[-3, 4\] is not a mask size; both sides"),
    ({"segmentation": {"size": [0, 4], "counts": ""}}, r"RLE size \[0, 4\] is not a mask size"),
    ({"segmentation": {"size": [3.5, 4], "counts": "4"}}, r"RLE size is a list .*two integers"),
    ({"segmentation": {"size": [3], "counts": "4"}}, r"RLE size is a list .*\[H, W\]"),
    ({"segmentation": {"size": "3x4", "counts": "4"}}, r"RLE size is a str"),
    ({"segmentation": {"size": [100_000, 100_000], "counts": "0"}},
     rf"100000x100000 = 10,000,000,000 pixels exceeds the limit .*{HINT}"),
    ({"segmentation": {"size": [3, 4], "counts": 12}}, r"RLE counts is an int \(12\); expected a compressed"),
    ({"segmentation": {"size": [3, 4]}}, r"RLE counts is null"),
    ({"segmentation": {"size": [3, 4], "counts": [1, 2]}}, r"run lengths sum to 3 but the mask is 4x3 \(WxH\) = 12"),
    ({"segmentation": {"size": [3, 4], "counts": [13, -1]}}, r"run length outside \[0, 12\]"),
    ({"segmentation": {"size": [3, 4], "counts": [6.0, 6.0]}}, r"non-negative integers"),
    ({"segmentation": {"size": [3, 4], "counts": ["6", 6]}}, r"non-negative integers"),
    ({"segmentation": {"size": [3, 4], "counts": "\u00e9t\u00e9"}}, r"not a valid compressed COCO RLE string"),
    ({"segmentation": {"size": [3, 4], "counts": "~~"}}, r"not a valid compressed COCO RLE string"),
    ({"segmentation": {"size": [300, 400], "counts": RLE["counts"]}}, r"sum to 12 but the mask is 400x300"),
    ({"segmentation": "abc"}, r"segmentation is a str \('abc'\), not a COCO RLE"),
    ({"segmentation": 5}, r"segmentation is an int"),
    ({"segmentation": None}, r"segmentation is null"),
    ({"segmentation": RLE, "score": "high"}, r"score is a str \('high'\); expected a finite number"),
    ({"segmentation": RLE, "score": float("nan")}, r"score is a float \(nan\)"),
    ({"segmentation": RLE, "id": "seven"}, r"id is a str \('seven'\); expected an integer"),
    ({"segmentation": RLE, "id": 1.5}, r"id is a float"),
    ({"segmentation": RLE, "id": 2**70}, r"id is an int"),
    ({"mask": RLE}, r"has no \"segmentation\""),
    (7, r"is an int \(7\), not an object"),
]


@pytest.mark.parametrize("entry, says", BAD_ENTRIES)
def test_bad_mask_entries_name_file_and_entry(tmp_path, entry, says):
    path = write_json(tmp_path / "m.json", [{"segmentation": RLE}, entry])
    with pytest.raises(InputError, match=rf"mask file .*m\.json: bad entry 1: .*{says}"):
        load_masks(path)


@pytest.mark.parametrize("data, says", [
    ("hello", r"top level is a str \('hello'\); expected a list of"),
    (42, r"top level is an int"),
    (None, r"top level is null"),
    ({"entities": 5}, r"top level is a dict"),
    ({"image_size": [3, -4], "entities": []}, r"image_size is a list .*two positive integers"),
])
def test_bad_mask_files(tmp_path, data, says):
    with pytest.raises(InputError, match=rf"mask file .*m\.json: {says}"):
        load_masks(write_json(tmp_path / "m.json", data))


def test_duplicate_ids_and_mixed_sizes_name_the_entries(tmp_path):
    path = write_json(tmp_path / "d.json", [{"segmentation": RLE, "id": 4}, {"segmentation": RLE, "id": 5},
                                            {"segmentation": RLE, "id": 4}])
    with pytest.raises(InputError, match=r"d\.json: entries 0 and 2 share the id 4; entity ids must be unique"):
        load_masks(path)
    path = write_json(tmp_path / "s.json", [{"segmentation": RLE}, {"segmentation": encode_rle(np.ones((4, 4), bool))}])
    with pytest.raises(InputError, match=r"s\.json: bad entry 1: mask is 4x4 \(WxH\) but entry 0 is 4x3"):
        load_masks(path)


def test_non_utf8_deep_and_too_many_entries(tmp_path, monkeypatch):
    (tmp_path / "b.json").write_bytes(b'[{"segmentation": "\xff\xfe"}]')
    with pytest.raises(InputError, match=r"b\.json: not a UTF-8 text file"):
        load_masks(tmp_path / "b.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: JSON nested too deeply"):
        load_masks(tmp_path / "deep.json")
    monkeypatch.setenv("ESGKIT_MAX_ENTITIES", "3")
    with pytest.raises(InputError, match=r"m\.json: 4 entities exceed the limit of 3 .*--max-entities"):
        load_masks(write_json(tmp_path / "m.json", [{"segmentation": RLE, "id": i} for i in range(4)]))


def test_image_size_argument(tmp_path):
    path = write_json(tmp_path / "m.json", [{"segmentation": RLE}])
    assert load_masks(path, image_size=(3, 4)).image_size == (3, 4)
    with pytest.raises(InputError, match=r"m\.json: bad entry 0: mask is 4x3 \(WxH\) but the image is 5x5; give"):
        load_masks(path, image_size=(5, 5))
    empty = write_json(tmp_path / "e.json", [])  # another framework's empty list: fine once the size is known
    assert load_masks(empty, image_size=(3, 4)).image_size == (3, 4)
    sized = write_json(tmp_path / "z.json", {"image_size": [2, 2], "entities": []})
    with pytest.raises(InputError, match=r"z\.json: masks are 2x2 \(WxH\) but the image is 4x3"):
        load_masks(sized, image_size=(3, 4))


def test_decode_rle_matches_pycocotools_on_all_encodings():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    for _ in range(200):
        h, w = rng.integers(1, 40, 2)
        m = rng.random((h, w)) < rng.random()
        rle = encode_rle(m)
        assert (decode_rle(rle) == m).all() and (decode_rle({**rle, "counts": rle["counts"].encode()}) == m).all()
        flat = m.T.ravel().astype(np.int8)
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]) != 0), prepend=0).tolist()
        assert (decode_rle({"size": [int(h), int(w)], "counts": runs}) == m).all()
        assert (mask_utils.decode(mask_utils.frPyObjects({"size": [int(h), int(w)], "counts": runs}, h, w)) == m).all()


@FUZZ
@given(st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=12), st.integers(1, 6), st.integers(1, 6))
def test_accepted_rle_strings_decode_as_pycocotools_does(counts, h, w):
    """Any compressed string check_rle accepts, pycocotools decodes to the same mask."""
    from pycocotools import mask as mask_utils

    try:
        ours = decode_rle({"size": [h, w], "counts": counts})
    except InputError:
        return
    assert (mask_utils.decode({"size": [h, w], "counts": counts.encode()}).astype(bool) == ours).all()


# ------------------------------------------------------------------------------------ grounding.json


def grounding_dict() -> dict:
    return {"caption": "a cat", "image_size": [3, 4],
            "phrases": [{"text": "a cat", "span": [0, 5], "plural": False, "entity_ids": [1], "scores": [0.9]}],
            "entities": [{"id": 1, "score": 1.0, "segmentation": RLE}]}


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["entities"][0].update(score="high"), r"bad entry 0: score is a str"),
    (lambda d: d["entities"].append(dict(d["entities"][0])), r"entries 0 and 1 share the id 1"),
    (lambda d: d["entities"][0].pop("id"), r"bad entry 0: has no \"id\""),
    (lambda d: d["entities"][0].update(segmentation=encode_rle(np.ones((2, 2), bool))), r"mask is 2x2 .* image is 4x3"),
    (lambda d: d.update(image_size="big"), r"image_size is a str"),
    (lambda d: d.pop("phrases"), r"not a grounding.json document \(no phrases\)"),
    (lambda d: d["phrases"][0].update(span=[0, "5"]), r"bad phrase 0: expected"),
    (lambda d: d["phrases"][0].update(span=[1, 5]), r"bad phrase 0|cuts"),
    (lambda d: d["phrases"][0].update(entity_ids=[8]), r"unknown entity ids \[8\]"),
    (lambda d: d["phrases"][0].update(scores=[]), r"bad phrase 0: .*1 ids but 0 scores"),
])
def test_bad_grounding_files_name_file_and_field(tmp_path, edit, says):
    data = grounding_dict()
    assert Grounding.from_dict(json.loads(json.dumps(data))).masks.ids.tolist() == [1]
    edit(data)
    path = write_json(tmp_path / "g.json", data)
    with pytest.raises(InputError, match=rf"grounding file .*g\.json: .*{says}"):
        Grounding.load(path)


def test_grounding_top_level_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"grounding file .*g\.json: top level is a list"):
        Grounding.load(write_json(tmp_path / "g.json", [1]))
    with pytest.raises(InputError, match=r"grounding file .*nope\.json: no such file"):
        Grounding.load(tmp_path / "nope.json")


# ------------------------------------------------------------------------- segmentation_to_mask


@pytest.mark.parametrize("segm, says", [
    (None, r"segmentation is null; expected polygons"),
    ("poly", r"segmentation is a str"),
    ({"size": [3, 5], "counts": "0"}, r"mask is 5x3 \(WxH\) but the image is 4x3"),
    ({"size": [3, 4], "counts": 5}, r"RLE counts is an int"),
    ({"size": [3, 4], "counts": [5]}, r"RLE run lengths sum to 5"),
    ([[1, 1, 2, 2]], r"polygon 0 is a list .*at least 6"),
    ([[1, 1, 2, 2, 3]], r"polygon 0 is a list .*even number"),
    ([[1, 1, 2, 2, 3, "3"]], r"polygon 0 .*finite numbers"),
    ([[1, 1, 2, 2, 3, float("nan")]], r"polygon 0 .*finite numbers"),
    ([[0, 0, 1, 1, 2, 0], 5], r"polygon 1 is an int"),
    ([[0, 0, 1e12, 0, 0, 1e12]], r"polygon 0 has points far outside the 4x3 \(WxH\) image"),
])
def test_segmentation_to_mask_checks_before_pycocotools(segm, says):
    with pytest.raises(InputError, match=rf"^ann 7: {says}"):
        segmentation_to_mask(segm, 3, 4, "ann 7")


def test_segmentation_to_mask_accepts_valid_input():
    assert (segmentation_to_mask(RLE, 3, 4, "a") == np.eye(3, 4, dtype=bool)).all()
    assert not segmentation_to_mask([], 3, 4, "a").any()
    square = segmentation_to_mask([[0.5, 0.5, 3.5, 0.5, 3.5, 2.5, 0.5, 2.5]], 3, 4, "a")
    assert square.shape == (3, 4) and square[1, 1:3].all()
    with pytest.raises(InputError, match=rf"a: RLE: 100000x100000 = .*{HINT}"):
        check_rle({"size": [100_000, 100_000], "counts": "0"}, "a")
    with pytest.raises(InputError, match="image_size is a list"):
        segmentation_to_mask(RLE, 0, 4, "a")


# -------------------------------------------------------------------------------------- fuzzing



def valid_files() -> dict[str, bytes]:
    import io

    rng = np.random.default_rng(0)
    out = {}
    for name, fmt, arr in [("png", "PNG", rng.integers(0, 256, (8, 8, 3), np.uint8)),
                           ("jpg", "JPEG", rng.integers(0, 256, (8, 8, 3), np.uint8)),
                           ("gif", "GIF", rng.integers(0, 4, (8, 8), np.uint8)),
                           ("tif", "TIFF", rng.random((8, 8)).astype(np.float32))]:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, fmt)
        out[name] = buf.getvalue()
    return out


VALID = valid_files()


@st.composite
def corrupted(draw) -> tuple[str, bytes]:
    """A valid small image file with random bytes overwritten and/or cut short, or plain random bytes."""
    kind = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    if draw(st.integers(0, 9)) == 0:
        data = bytearray(draw(st.binary(max_size=200)))
    return draw(st.sampled_from(["png", "jpg", "json"])), bytes(data)


def outcome(fn, *args):
    """The result, or None for an esgkit error; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args)
        except EsgkitError as exc:
            assert str(exc)
            return None


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(case=corrupted())
def test_fuzz_image_and_mask_files(fuzz_dir, case):
    ext, data = case
    path = fuzz_dir / f"f.{ext}"
    path.write_bytes(data)
    rgb = outcome(load_image, path)
    assert rgb is None or (rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3)
    masks = outcome(load_masks, path)
    assert masks is None or isinstance(masks, EntityMasks)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 20) | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["segmentation", "size", "counts", "score", "id", "entities", "image_size",
                                         "caption", "phrases", "text", "span", "plural", "entity_ids", "scores"]),
                        inner, max_size=5),
                    max_leaves=20)
RLE_LIKE = st.fixed_dictionaries({"size": st.lists(st.integers(-2, 6), max_size=3) | JSON,
                                  "counts": st.text(alphabet=[chr(c) for c in range(40, 120)], max_size=8)
                                  | st.lists(st.integers(-2, 30), max_size=6) | JSON})
ENTRY = st.fixed_dictionaries({"segmentation": RLE_LIKE | JSON},
                              optional={"score": JSON | st.floats(), "id": st.integers(-3, 3) | JSON})


@FUZZ
@given(data=JSON | st.lists(ENTRY, max_size=4) | st.fixed_dictionaries(
    {"image_size": st.lists(st.integers(-1, 5), max_size=3) | JSON, "entities": st.lists(ENTRY, max_size=3)}))
def test_fuzz_json_masks(fuzz_dir, data):
    path = fuzz_dir / "m.json"
    path.write_text(json.dumps(data))
    masks = outcome(load_masks, path)
    assert masks is None or isinstance(masks, EntityMasks)
    outcome(Grounding.from_dict, data)
    outcome(segmentation_to_mask, data, 3, 4, "fuzz")
