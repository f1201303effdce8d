import numpy as np
import pytest

from esgkit.core import EntityMasks, InputError, get_registry, save_masks
from esgkit.core.io import save_id_map_png


def test_ground_truth_returns_annotation_and_checks_size():
    seg = get_registry().build("segmenter", {"name": "ground_truth"})
    em = EntityMasks(np.ones((1, 4, 5), bool))
    assert seg.segment(np.zeros((4, 5, 3), np.uint8), annotation=em) is em
    with pytest.raises(InputError, match="5x4 .* 6x4"):
        seg.segment(np.zeros((4, 6, 3), np.uint8), annotation=em)
    with pytest.raises(InputError, match="--masks"):
        seg.segment(np.zeros((4, 5, 3), np.uint8))


def test_from_files_file_and_folder(tmp_path):
    ids = np.zeros((6, 7), np.int64)
    ids[:3, :3] = 4
    ids[3:, 3:] = 8
    save_id_map_png(tmp_path / "img1.png", ids)
    save_masks(tmp_path / "img2.json", EntityMasks(np.ones((1, 6, 7), bool), ids=[77]))
    image = np.zeros((6, 7, 3), np.uint8)
    seg = get_registry().build("segmenter", {"name": "from_files", "path": str(tmp_path)})
    assert list(seg.segment(image, image_id="img1").ids) == [4, 8]
    assert list(seg.segment(image, image_id="img2").ids) == [77]
    with pytest.raises(InputError, match="no mask file for image 'img3'"):
        seg.segment(image, image_id="img3")
    one = get_registry().build("segmenter", {"name": "from_files", "path": str(tmp_path / "img1.png")})
    assert len(one.segment(image)) == 2
    with pytest.raises(InputError, match="7x6 .* 8x6"):
        one.segment(np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(InputError, match="path is empty"):
        get_registry().build("segmenter", {"name": "from_files"}).segment(image)
