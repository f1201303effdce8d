"""`esgkit ui` in a real headless Chromium: start the command on a free port, upload a ShapesWorld
scene, type a caption, ground; the page shows each phrase in its colour, and the overlay's grounded
pixels are those of `esgkit run`'s grounding.json for the same input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from esgkit.core.cli import main
from esgkit.core.io import save_image
from esgkit.core.types import Grounding
from esgkit.pipelines.cli import demo_scene
from esgkit.ui.browser import Page, browser_available, chromium, serve

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(browser_available()), reason=str(browser_available()))]

CAPTION = "a red circle above the grass"  # phrases with few entities: the labels stay a small part of the picture


def painted(overlay: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.abs(overlay.astype(int) - image.astype(int)).sum(2) > 0


def interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` shrunk by ``margin`` pixels."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, iterations=margin) if mask.any() else mask


@pytest.fixture(scope="module")
def driver_and_url():
    with serve() as url, chromium() as driver:  # one server and one browser for the module (models load once)
        yield driver, url


def test_the_page_grounds_a_caption_like_esgkit_run(driver_and_url, tmp_path):
    image = demo_scene(1, "512x512")["image"]
    save_image(tmp_path / "scene.png", image)
    assert main(["run", "esg_tiny", "--image", str(tmp_path / "scene.png"), "--caption", CAPTION,
                 "--out", str(tmp_path / "run")]) == 0
    run = Grounding.from_dict(json.loads((tmp_path / "run" / "grounding.json").read_text()))
    phrases = [g.phrase.text for g in run.groundings]
    page = Page(*driver_and_url)
    page.upload(str(tmp_path / "scene.png"))
    assert not page.error()
    assert "entities from cropformer_tiny" in page.find("figure.entities figcaption").text
    (panel,) = page.ground(CAPTION)
    spans = panel.find_elements("css selector", ".phrase")
    assert [s.text for s in spans] == phrases
    colors = [s.get_attribute("data-color") for s in spans]
    assert all(c.startswith("#") for c in colors)
    by_phrase: dict[str, set[str]] = {}
    for color, phrase in zip(colors, phrases):
        by_phrase.setdefault(phrase, set()).add(color)
    assert all(len(c) == 1 for c in by_phrase.values())  # one colour per phrase text …
    assert len(set.union(*by_phrase.values())) == len(by_phrase)  # … and a different one for each phrase
    overlay = page.overlay(panel)
    assert overlay.shape == image.shape
    grounded = np.zeros(image.shape[:2], bool)
    for k in range(len(phrases)):
        grounded |= run.phrase_mask(k)
    assert grounded.any(), "esgkit run grounded nothing: the comparison would be empty"
    changed = painted(overlay, image)
    outside = interior(~grounded, 4)  # beyond the outlines' halo
    assert changed[grounded].mean() > 0.97  # every grounded pixel is painted …
    assert changed[outside].mean() < 0.03  # … and the rest of the image is left alone (labels aside)
    k = next(k for k, g in enumerate(run.groundings) if g.entity_ids)
    alone = page.click_phrase(panel, k)
    mask = run.phrase_mask(k)
    changed = painted(alone, image)
    assert changed[mask].mean() > 0.97 and changed[interior(~mask, 4)].mean() < 0.03


def test_the_page_shows_a_bad_upload_as_a_message(driver_and_url, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    page = Page(*driver_and_url)  # a fresh page: no picture yet
    page.upload(str(tmp_path / "notes.png"))
    assert "notes.png: not a readable image" in page.error()
    page.find("#ground-button").click()
    page.wait.until(lambda d: "generate a scene first" in page.error())
