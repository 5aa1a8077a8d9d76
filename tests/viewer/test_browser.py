"""A real browser: `pathxai view` on 127.0.0.1, headless Chromium via selenium, screenshots checked."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.viewer.page import OSD_JS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("PATHXAI_SCREENSHOTS", "")) if os.environ.get("PATHXAI_SCREENSHOTS") else None


def _need_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "headless browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    if not OSD_JS.is_file():
        pytest.skip(
            "OpenSeadragon is not installed (bash scripts/install.sh runs npm install in pathxai/viewer/static)"
        )
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


@pytest.fixture
def viewer_server(viewer_run: dict[str, Path], tmp_path: Path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path)}  # streamlit writes ~/.streamlit
    proc = subprocess.Popen(
        [sys.executable, "-m", "pathxai", "view", str(viewer_run["out"]), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the whole group, nothing left behind
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _driver(chromium: str, driver: str, profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _frame_pixels(drv, frame) -> np.ndarray:
    png = drv.get_screenshot_as_png()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    r = frame.rect
    dpr = drv.execute_script("return window.devicePixelRatio") or 1
    x0, y0 = int(r["x"] * dpr), int(r["y"] * dpr)
    return img[y0 + 10 : y0 + int(540 * dpr), x0 + 10 : x0 + int(r["width"] * dpr) - 10]


def _overlay_share(px: np.ndarray) -> tuple[float, float, float]:
    """Shares of (non-background, reddish overlay, bluish/yellow overlay) pixels."""
    p = px.astype(int)
    r, g, b = p[..., 0], p[..., 1], p[..., 2]
    non_bg = ~((np.abs(r - 244) < 6) & (np.abs(g - 244) < 6) & (np.abs(b - 244) < 6)) & ~(
        (r > 250) & (g > 250) & (b > 250)
    )
    red = r - np.maximum(g, b) > 90
    other = (b - r > 60) | ((r > 180) & (g > 160) & (b < 110))
    n = px.shape[0] * px.shape[1]
    return non_bg.sum() / n, red.sum() / n, other.sum() / n


def test_viewer_renders_slide_and_overlay_in_chromium(viewer_server: str, tmp_path: Path) -> None:
    chromium, driver = _need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    drv = _driver(chromium, driver, tmp_path / "profile")
    try:
        drv.get(viewer_server)
        wait = WebDriverWait(drv, 60)
        frame = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title*='pathxai_slide_viewer']"))
        )
        drv.switch_to.frame(frame)
        wait.until(lambda d: d.execute_script("return document.body.getAttribute('data-slide-open')") == "1")
        # wait until the slide and overlay tiles are drawn
        wait.until(
            lambda d: d.execute_script(
                "var v = document.querySelector('#osd canvas'); return v && v.width > 0;"
            )
        )
        drv.switch_to.default_content()
        # tiles arrive asynchronously (slowly on a loaded machine): poll the screenshot for up to 45 s
        deadline = time.time() + 45
        while True:
            time.sleep(1.5)
            non_bg, red, other = _overlay_share(_frame_pixels(drv, frame))
            if (non_bg > 0.2 and red + other > 0.005) or time.time() > deadline:
                break
        if SHOTS:
            SHOTS.mkdir(parents=True, exist_ok=True)
            drv.save_screenshot(str(SHOTS / "viewer_relevance.png"))
        assert non_bg > 0.2, f"slide canvas looks blank ({non_bg:.1%} non-background pixels)"
        assert red + other > 0.005, f"no overlay colours ({red:.2%} red, {other:.2%} blue/yellow)"

        # click the slide centre: Streamlit reruns and shows that tile's panel
        drv.switch_to.frame(frame)
        canvas = drv.find_element(By.CSS_SELECTOR, "#osd .openseadragon-canvas")
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(drv).move_to_element(canvas).click().perform()
        drv.switch_to.default_content()
        wait.until(lambda d: any(h.text.startswith("Tile ") for h in d.find_elements(By.CSS_SELECTOR, "h3")))
        time.sleep(2)
        if SHOTS:
            drv.save_screenshot(str(SHOTS / "viewer_click.png"))
    finally:
        drv.quit()
