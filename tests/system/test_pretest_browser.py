"""Headless Chromium takes the pretest as scripted participants; the server's files hold their cursors.

A tiny study is built by the real ``align-pretest build`` and served by the real ``align-pretest
serve`` (own process, free 127.0.0.1 port, stopped by PID). Chromium is driven over the DevTools
protocol with real input events (``Input.dispatchMouseEvent``): each participant consents, plays
the practice clip, then every trial, moving the mouse on every poll to the product while an
``early_boost`` clip is in its first third and elsewhere otherwise (a planted attention
difference), clicks the red dot when it appears, answers the realism pairs and gets the
completion code. The session files must hold the samples, in the trial's video coordinates, and
show the planted difference; :func:`participant_files` hands the files to the collection side.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from pretest_fixture import build_study_cli, make_pretest_data, product_centre, serve_argv, session_files

from .conftest import REPO_ROOT
from .servers import LOOPBACK, free_port, http_ok, start_server, wait_until

pytestmark = pytest.mark.system

PARTICIPANTS = 3  # one per Latin-square list
CLIP_S = 3.0
SCREENSHOT = REPO_ROOT / "docs" / "img" / "pretest_trial.png"


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, port: int):
        websocket = pytest.importorskip("websocket", reason="websocket-client drives Chromium's DevTools protocol")
        targets = json.loads(urllib.request.urlopen(f"http://{LOOPBACK}:{port}/json", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def move(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="none", buttons=0)

    def click(self, x: float, y: float) -> None:
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def click_element(self, element_id: str) -> None:
        box = self.evaluate(
            f"(() => {{ const r = document.getElementById('{element_id}').getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        self.click(*box)

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while self.evaluate(expression) is not True:
            if time.monotonic() > deadline:
                errors = self.evaluate("JSON.stringify(window.pretest && window.pretest.errors)")
                raise AssertionError(f"page never reached {what or expression}; errors {errors}")
            time.sleep(0.05)

    def close(self) -> None:
        self.ws.close()


def participant_files(study: Path) -> list[Path]:
    """The session files the participants left (the collection side extends the test from here)."""
    return session_files(study)


def follow_clip(tools: DevTools, boosted: bool, screenshot: Path | None = None) -> bool:
    """Move the mouse while the clip plays: on the product in the boosted first third, below it otherwise.

    With ``screenshot``, the page is captured once while the sharp window sits on the product
    (True returned), after checking the window canvas is drawn there.
    """
    moves, shot = 0, False
    while True:
        state = tools.evaluate(
            "(() => { const v = document.getElementById('video'), r = v.getBoundingClientRect(),"
            " d = document.getElementById('dot'), q = d.getBoundingClientRect();"
            " return [v.currentTime, v.duration, v.ended, r.left, r.top, r.width, r.height,"
            " d.style.display === 'block', q.left + q.width / 2, q.top + q.height / 2]; })()"
        )
        t, duration, ended, left, top, width, height, dot_shown, dot_x, dot_y = state
        if ended:
            return shot
        if dot_shown:
            tools.click(dot_x, dot_y)
            continue
        px, py = product_centre(t, duration)
        if not (boosted and t < duration / 3):
            py = 0.8  # elsewhere: well below the product
        tools.move(left + px * width, top + py * height)
        moves += 1
        if screenshot is not None and not shot and moves >= 6 and boosted and t < duration / 4:
            drawn = tools.evaluate(
                f"document.getElementById('window').getContext('2d')"
                f".getImageData({px * width:.0f}, {py * height:.0f}, 1, 1).data[3]"
            )
            assert drawn == 255, "the sharp window is not drawn under the cursor"
            save_screenshot(tools, screenshot)
            shot = True
        time.sleep(0.03)


def save_screenshot(tools: DevTools, path: Path) -> None:
    shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and float(image.std()) > 5.0, "the trial page looks blank"
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def take_part(tools: DevTools, url: str, number: int, screenshot: Path | None) -> str:
    """One participant's whole path; returns the completion code the page showed."""
    tools.call("Page.navigate", url=f"{url}?PROLIFIC_PID=participant-{number}&STUDY_ID=s1&SESSION_ID=x{number}")
    tools.wait_for("document.readyState === 'complete' && !!document.getElementById('agree')")
    tools.click_element("agree")
    tools.wait_for("window.pretest.screen === 'instructions'")
    tools.click_element("practice-go")
    trials = tools.evaluate("window.pretest.plan.trials")
    shot = screenshot is None
    for index in range(len(trials) + 1):  # the practice clip, then every trial
        if index:
            tools.wait_for("window.pretest.screen === 'between'", what="the next-video screen")
            tools.click_element("next")
        tools.wait_for("document.getElementById('start').style.display === 'block'", what="the Play button")
        tools.click_element("start")
        boosted = index > 0 and trials[index - 1]["variant"] == "early_boost"
        shot = follow_clip(tools, boosted, None if shot else screenshot) or shot
    for _ in tools.evaluate("window.pretest.plan.realism"):
        tools.wait_for("window.pretest.screen === 'realism' && !!document.querySelector('#answers button')")
        tools.evaluate("document.querySelector('#answers button').click()")
        time.sleep(0.1)
    tools.wait_for("window.pretest.screen === 'done'", timeout=60, what="the completion screen")
    assert shot, "no boosted trial was captured"
    return tools.evaluate("document.getElementById('code').textContent")


def on_product_share(records: list[dict], variant: str, first_third: bool) -> float:
    """Share of the variant's samples within 0.1 (frame fractions) of the product."""
    hits = total = 0
    for record in records:
        if record["kind"] != "cursor" or record["practice"] or record["variant"] != variant:
            continue
        for t, x, y in record["samples"]:
            if (t < CLIP_S / 3) != first_third:
                continue
            px, py = product_centre(t, CLIP_S)
            hits += (x - px) ** 2 + (y - py) ** 2 < 0.1**2
            total += 1
    assert total > 0, f"no samples of {variant}"
    return hits / total


def chromium_argv(chromium: Path, profile: Path, debug_port: int) -> list[str]:
    return [
        str(chromium),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-extensions",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--window-size=1000,760",
        f"--remote-debugging-address={LOOPBACK}",
        f"--remote-debugging-port={debug_port}",
        "about:blank",
    ]


def test_scripted_participants_leave_their_cursor_samples_in_the_session_files(
    chromium_path: Path, tmp_path: Path
) -> None:
    study = build_study_cli(make_pretest_data(tmp_path / "data", videos=3, seconds=CLIP_S))
    port, debug_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = start_server("align-pretest", serve_argv(study, port), tmp_path / "serve.log", env=env)
    browser = None
    codes = []
    try:
        url = f"http://{LOOPBACK}:{port}/"
        wait_until(lambda: http_ok(url), 60, alive=server.alive, what="align-pretest", on_fail=server.log_tail)
        browser = start_server(
            "chromium", chromium_argv(chromium_path, tmp_path / "profile", debug_port), tmp_path / "c.log"
        )
        version = f"http://{LOOPBACK}:{debug_port}/json/version"
        wait_until(lambda: http_ok(version), 60, alive=browser.alive, what="chromium", on_fail=browser.log_tail)
        tools = DevTools(debug_port)
        try:
            tools.call("Page.enable")
            shot = SCREENSHOT if os.environ.get("ALIGN_PRETEST_SCREENSHOT") else tmp_path / "trial.png"
            for number in range(PARTICIPANTS):
                codes.append(take_part(tools, url, number, shot if number == 0 else None))
        finally:
            tools.close()
    finally:
        if browser is not None:
            browser.stop()
        server.stop()
    study_code = json.loads((study / "study.json").read_text())["completion_code"]
    assert codes == [study_code] * PARTICIPANTS
    files = participant_files(study)
    assert len(files) == PARTICIPANTS
    records = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    text = "".join(path.read_text() for path in files)
    assert "participant-" not in text and "HeadlessChrome" not in text and LOOPBACK not in text
    kinds = {r["kind"] for r in records}
    assert {"session", "cursor", "attention_check", "realism", "complete"} <= kinds
    checks = [r for r in records if r["kind"] == "attention_check"]
    assert checks and all(r["clicked"] for r in checks)
    batches = [r["batch_id"] for r in records]
    assert len(batches) == len(set(batches))
    samples = sum(len(r["samples"]) for r in records if r["kind"] == "cursor" and not r["practice"])
    assert samples >= PARTICIPANTS * 3 * CLIP_S * 5  # at least 5 samples per second of every trial
    boosted = on_product_share(records, "early_boost", first_third=True)
    for control in ("baseline", "placebo"):
        assert boosted - on_product_share(records, control, first_third=True) > 0.5
    late = [on_product_share(records, v, first_third=False) for v in ("baseline", "early_boost", "placebo")]
    assert max(late) < 0.2
