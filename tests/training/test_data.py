import pytest

from esgkit.training.data import PreparedSplit


class Doubling(PreparedSplit):
    calls = 0

    def prepare(self, sample):
        Doubling.calls += 1
        return {"x": sample["x"] * 2}


def test_prepared_split_caches_and_bounds():
    split = Doubling([{"x": i} for i in range(5)], max_images=3)
    assert len(split) == 3
    assert split[2] == {"x": 4} and split[2] == {"x": 4}
    assert Doubling.calls == 1  # prepared once, then cached
    with pytest.raises(IndexError):
        split[3]
    assert [s["x"] for s in split] == [0, 2, 4]
