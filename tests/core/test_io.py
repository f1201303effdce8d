import json

import numpy as np
import pytest

from esgkit.core import EntityMasks, InputError, load_image, load_masks, save_masks
from esgkit.core.io import save_id_map_png


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(InputError, match="corrupt.png: not a readable image"):
        load_image(corrupt)


def test_masks_files_round_trip(tmp_path):
    m = np.zeros((2, 5, 7), bool)
    m[0, 1:3, 1:4] = True
    m[1, 3:, 4:] = True
    em = EntityMasks(m, [0.5, 0.25], [3, 300])
    save_masks(tmp_path / "m.json", em)
    back = load_masks(tmp_path / "m.json")
    assert (back.masks == m).all() and list(back.ids) == [3, 300] and np.allclose(back.scores, [0.5, 0.25])
    save_id_map_png(tmp_path / "m.png", em.to_id_map())  # 300 needs the G channel: id = R + 256 G
    back = load_masks(tmp_path / "m.png")
    assert list(back.ids) == [3, 300] and (back.masks == m).all()


def test_an_empty_result_keeps_its_image_size(tmp_path):
    save_masks(tmp_path / "none.json", EntityMasks(np.zeros((0, 5, 7), bool)))
    back = load_masks(tmp_path / "none.json")
    assert len(back) == 0 and back.image_size == (5, 7)
    (tmp_path / "bare.json").write_text("[]")  # another framework's empty list: the size is unknown
    with pytest.raises(InputError, match="bare.json: holds no masks.*image_size"):
        load_masks(tmp_path / "bare.json")


def test_masks_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_masks(tmp_path / "x.json")
    (tmp_path / "x.json").write_text("[{\"nosegmentation\": 1}]")
    with pytest.raises(InputError, match="bad entry"):
        load_masks(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="unsupported extension"):
        load_masks(tmp_path / "x.txt")
    (tmp_path / "e.json").write_text(json.dumps([]))
    with pytest.raises(InputError, match="holds no masks"):
        load_masks(tmp_path / "e.json")
