"""Headless Chromium drags a box on ``align-annotate``'s page; the server writes it to annotations.csv.

The page server runs as its own process on a free 127.0.0.1 port (stopped by PID). Chromium is
driven over the DevTools protocol with real input events (``Input.dispatchMouseEvent``): press on
the scene's canvas, move, release, then click Save, as a user would.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from align_core.inputs.annotations import read_annotations

from .conftest import REPO_ROOT, VIDEO_ID, make_data_dir
from .devtools import DevTools as PageDevTools
from .servers import LOOPBACK, free_port, http_ok, start_server, wait_until

pytestmark = pytest.mark.system


class DevTools(PageDevTools):
    """The page's DevTools session, with the mouse gestures of drawing a box."""

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)


def test_drag_a_box_and_save_it(chromium_path: Path, shared_data: Path, tmp_path: Path) -> None:
    data_dir = make_data_dir(tmp_path / "data", shared_data)
    port = free_port()
    page_server = start_server(
        "align-annotate",
        [sys.executable, "-m", "align_core.cli.annotate", "--data-dir", str(data_dir), "--port", str(port)],
        tmp_path / "annotate.log",
        cwd=REPO_ROOT,
    )
    debug_port = free_port()
    browser = None
    try:
        url = f"http://{LOOPBACK}:{port}/"
        wait_until(
            lambda: http_ok(url),
            timeout=60,
            alive=page_server.alive,
            what="align-annotate page",
            on_fail=page_server.log_tail,
        )
        browser = start_server(
            "chromium",
            [
                str(chromium_path),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1200,900",
                f"--remote-debugging-address={LOOPBACK}",
                f"--remote-debugging-port={debug_port}",
                "about:blank",
            ],
            tmp_path / "chromium.log",
        )
        wait_until(
            lambda: http_ok(f"http://{LOOPBACK}:{debug_port}/json/version"),
            timeout=60,
            alive=browser.alive,
            what="chromium DevTools",
            on_fail=browser.log_tail,
        )
        tools = DevTools(debug_port)
        try:
            tools.call("Page.enable")
            tools.call("Page.navigate", url=url)
            canvas = f"document.getElementById('canvas-{VIDEO_ID}-1')"
            deadline = time.monotonic() + 60
            while tools.evaluate(f"!!({canvas} && {canvas}.dataset.ready)") is not True:
                assert time.monotonic() < deadline, "the page never showed the scene's first frame"
                time.sleep(0.2)
            rect = tools.evaluate(
                f"(() => {{ const r = {canvas}.getBoundingClientRect();"
                f" return [r.left, r.top, r.width, r.height, {canvas}.width]; }})()"
            )
            left, top, width, height, pixels = rect
            scale = width / pixels  # CSS pixels per video pixel (the canvas is shown scaled down)
            start, end = (100, 120), (260, 300)  # in video pixels
            tools.mouse("mousePressed", left + start[0] * scale, top + start[1] * scale)
            for step in range(1, 6):
                x = start[0] + (end[0] - start[0]) * step / 5
                y = start[1] + (end[1] - start[1]) * step / 5
                tools.mouse("mouseMoved", left + x * scale, top + y * scale)
            tools.mouse("mouseReleased", left + end[0] * scale, top + end[1] * scale, buttons=0)
            status = tools.evaluate(f"{canvas}.nextSibling.textContent")
            assert status.startswith("box "), status
            save = tools.evaluate(
                "(() => { const r = document.getElementById('save').getBoundingClientRect();"
                " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
            )
            tools.mouse("mousePressed", *save)
            tools.mouse("mouseReleased", *save, buttons=0)
            deadline = time.monotonic() + 30
            while tools.evaluate("document.body.dataset.saved || ''") in ("", None):
                assert time.monotonic() < deadline, "Save never answered"
                time.sleep(0.2)
            assert tools.evaluate("document.body.dataset.saved") == "1"
            shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
            (tmp_path / "annotate-page.png").write_bytes(shot)
            image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and float(image.std()) > 8.0, "the annotation page looks blank"
            keep = os.environ.get("ALIGN_SCREENSHOT_DIR")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / "annotate-page.png").write_bytes(shot)
        finally:
            tools.close()
    finally:
        if browser is not None:
            browser.stop()
        page_server.stop()
    rows = read_annotations(data_dir / "raw" / "annotations.csv").rows_for(VIDEO_ID)
    assert len(rows) == 1 and rows[0].kind == "box" and rows[0].scene == 1
    tolerance = 2 / scale + 1  # one CSS pixel of rounding either way
    assert abs(rows[0].x - 100) <= tolerance and abs(rows[0].y - 120) <= tolerance
    assert abs(rows[0].w - 160) <= 2 * tolerance and abs(rows[0].h - 180) <= 2 * tolerance
