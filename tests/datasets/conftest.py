"""A tiny ShapesWorld split (non-square, to catch width/height mix-ups) shared by the dataset tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sw_root(tmp_path_factory):
    from esgkit.datasets.shapesworld import generate

    return generate(tmp_path_factory.mktemp("shapesworld"), images=6, seed=3, size="192x160", split="val")
