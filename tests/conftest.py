"""Shared fixtures. Tests run on CPU with tiny configs; HF hub access is off."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# segmenter outputs that `esgkit eval` caches go to a scratch folder, never the user's ~/.cache
os.environ["ESGKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="esgkit-test-cache-")

import esgkit  # noqa: E402,F401  (installs the torchvision guard before anything imports torchvision)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(Path(__file__).parent) not in sys.path:  # shared test helpers (scenes.py) import by name
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo shipped with scikit-image (public domain), downscaled for speed."""
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((128, 128)), np.uint8)


@pytest.fixture(scope="session")
def photo_path(tmp_path_factory, photo) -> Path:
    from esgkit.core.io import save_image

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    save_image(path, photo)
    return path


@pytest.fixture(scope="session")
def tiny_shapesworld(tmp_path_factory) -> Path:
    """A tiny ShapesWorld folder shared by the tests that train or evaluate on one (read it, never write
    into it): split train, 4 images of seed 0, and split val, 2 images of seed 1, all 96×96."""
    from esgkit.datasets.shapesworld import generate

    root = tmp_path_factory.mktemp("tiny_shapesworld")
    generate(root, images=4, seed=0, size="96x96", split="train")
    generate(root, images=2, seed=1, size="96x96", split="val")
    return root


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``esgkit`` in a fresh interpreter, the way a user runs it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "esgkit.core.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


@pytest.fixture
def cli():
    return run_cli
