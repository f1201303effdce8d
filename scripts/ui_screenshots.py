"""Screenshots of `esgkit ui` for docs/ui.md and the time from clicking "Ground" to the overlay.

Starts `esgkit ui` (esg_tiny: the shipped CropFormer and GELLA) on a free local port, drives it in
headless Chromium as a user would — generate a ShapesWorld scene, type a caption, ground; the same
caption on two segmenters side by side; a phrase clicked — saves the screenshots, then grounds the
caption ``--repeats`` times and prints the median click-to-overlay time (the page's own measurement:
performance.now() from the click to the overlay image's load event).

    python scripts/ui_screenshots.py --out docs/images
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from esgkit.ui.browser import Page, browser_available, chromium, serve

def save(driver: Any, path: Path) -> None:
    """A screenshot, reduced to 256 colours (a page's flat colours survive it; the file is ~4× smaller)."""
    from PIL import Image

    driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


CAPTION = "a brown crescent in the middle, five cyan hexagons and a small orange triangle on the water"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/images", help="folder for ui_*.png")
    parser.add_argument("--seed", type=int, default=0, help="the ShapesWorld scene's seed")
    parser.add_argument("--repeats", type=int, default=5, help="timed clicks (median)")
    args = parser.parse_args()
    missing = browser_available()
    if missing:
        raise SystemExit(missing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serve() as url, chromium(1500, 1500) as driver:
        page = Page(driver, url)
        page.find("#scene-seed").clear()
        page.find("#scene-seed").send_keys(str(args.seed))
        page.find("#scene-button").click()
        page.wait.until(lambda d: page.all("figure.entities"))
        page.idle()
        panels = page.ground(CAPTION)
        save(driver, out / "ui_grounding.png")
        times = [int(panels[0].get_attribute("data-ms"))]
        for _ in range(args.repeats - 1):
            times.append(int(page.ground(CAPTION)[0].get_attribute("data-ms")))
        page.click_phrase(page.all(".panel")[0], 0)
        save(driver, out / "ui_phrase.png")
        page.choose("#segmenter", "ground_truth")
        page.choose("#segmenter-b", "cropformer_tiny")
        page.ground(CAPTION)
        save(driver, out / "ui_side_by_side.png")
    print(f"click → overlay, esg_tiny on cropformer_tiny's entities, {len(times)} clicks: median "
          f"{statistics.median(times)} ms (all: {times}; the entities were computed when the scene came: a click "
          "runs GELLA and draws the overlay)")
    for name in ("ui_grounding.png", "ui_phrase.png", "ui_side_by_side.png"):
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
