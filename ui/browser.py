"""Drive the page in a real headless Chromium (Debian's ``chromium`` + ``chromedriver``, through
Selenium): shared by the browser test and ``scripts/ui_screenshots.py``. Starts ``esgkit ui`` as a
user does, in its own process on a free local port."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

TIMEOUT = 240  # seconds: the first request loads the models on a busy 2-core machine


def browser_available() -> str | None:
    """None when Chromium and ChromeDriver are here, else what is missing (the test's skip reason)."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return f"missing: {', '.join(missing)} (bash scripts/install.sh --test installs them)" if missing else None


@contextmanager
def serve(*args: str) -> Iterator[str]:
    """``esgkit ui --port 0 ARGS`` in a subprocess; yields its URL once it serves, stops it after."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "esgkit.core.cli", "ui", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("esgkit ui exited before serving:\n" + "".join(lines))
            lines.append(line)
            found = re.search(r"serving on (http://\S+/)", line)
            if found:
                yield found.group(1)
                return
        raise RuntimeError("esgkit ui did not start in time:\n" + "".join(lines))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def chromium(width: int = 1500, height: int = 1100) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def decode_png(src: str) -> np.ndarray:
    """A ``data:image/png;base64,…`` URL → uint8 (H, W, 3)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


class Page:
    """The page's elements by their ids, and waits for what the user waits for."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, TIMEOUT)
        driver.get(url)
        self.wait.until(lambda d: d.find_elements("css selector", "#segmenter option"))

    def find(self, selector: str) -> Any:
        return self.driver.find_element("css selector", selector)

    def all(self, selector: str) -> list[Any]:
        return self.driver.find_elements("css selector", selector)

    def idle(self) -> None:
        self.wait.until(lambda d: "busy" not in self.find("#status").get_attribute("class"))

    def error(self) -> str:
        box = self.find("#error")
        return box.text if box.is_displayed() else ""

    def upload(self, path: str) -> None:
        self.find("#upload").send_keys(str(path))
        self.wait.until(lambda d: self.all("figure.entities") or self.error())
        self.idle()

    def choose(self, select: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(select)).select_by_value(value)
        self.idle()

    def ground(self, text: str, mode: str = "caption") -> list[Any]:
        """Type ``text``, press Ground, wait until every panel's overlay has loaded; the panels."""
        self.find(f"input[name=mode][value={mode}]").click()
        if mode != "describe":
            box = self.find("#text")
            box.clear()
            box.send_keys(text)
        old = {p.id for p in self.all(".panel")}
        self.find("#ground-button").click()
        self.wait.until(lambda d: self.error() or (self.all(".panel") and {p.id for p in self.all(".panel")} != old
                        and all(p.get_attribute("data-ms") for p in self.all(".panel"))))
        self.idle()
        return self.all(".panel")

    def overlay(self, panel: Any) -> np.ndarray:
        img = panel.find_element("css selector", "img.overlay")
        return self.image(img)

    def image(self, img: Any) -> np.ndarray:
        src = img.get_attribute("src")
        if src.startswith("data:"):
            return decode_png(src)
        data = self.driver.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => r.blob()).then(b => { const f = new FileReader();"
            " f.onload = () => done(f.result); f.readAsDataURL(b); });", src)
        return decode_png(data)

    def click_phrase(self, panel: Any, index: int) -> np.ndarray:
        """Click phrase ``index`` of ``panel``; the overlay once it shows that phrase alone."""
        img = panel.find_element("css selector", "img.overlay")
        panel.find_element("css selector", f".phrase[data-index='{index}']").click()
        self.wait.until(lambda d: f"only={index}" in img.get_attribute("src")
                        and d.execute_script("return arguments[0].complete", img))
        return self.image(img)


__all__ = ["Page", "browser_available", "chromium", "decode_png", "serve"]
