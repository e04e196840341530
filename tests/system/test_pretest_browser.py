"""Headless Chromium takes the pretest as scripted participants; the whole loop recovers their attention.

A tiny study is built by the real ``align-pretest build`` and served by the real ``align-pretest
serve`` (own process, free 127.0.0.1 port, stopped by PID). Chromium is driven over the DevTools
protocol with real input events (``Input.dispatchMouseEvent``; one participant on an emulated touch
screen with ``Input.dispatchTouchEvent``, dragging a finger): each participant consents, plays
the practice clip, then every trial. On every poll the mouse goes to the product while an
``early_boost`` clip is in its first third (the planted attention difference); otherwise the
participant visits the product for a share of each half second (a share of their own, drawn per
trial) and looks below it the rest of the time. They click the red dot when it appears, answer the
realism pairs and get the completion code.

The participants run once per module (:func:`pretest_run`). One test checks the session files the
server wrote; the other runs the loop behind them, page -> files -> DuckDB -> analysis, with the
functions the Dagster assets run (``collect_pretest`` for ``pretest_responses``,
``video_human_stage`` for ``human_attention``, ``pretest_check_tables`` for
``human_manipulation_check``) against the fixture's product masks: the human check must find the
early-window boost and no placebo change.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pretest_fixture import Viewer, build_study_cli, make_pretest_data, product_centre, serve_argv, session_files

from align_core.io.layout import DataLayout
from align_core.io.warehouse import read_connection
from align_core.pretest.collect import collect_pretest, load_collected_study
from align_core.pretest.stage import video_human_stage
from analysis.pretest import HumanCheckThresholds, pretest_check_tables

from .conftest import REPO_ROOT
from .devtools import DevTools as PageDevTools
from .servers import LOOPBACK, free_port, http_ok, start_server, wait_until

pytestmark = pytest.mark.system

PARTICIPANTS = 3  # one per Latin-square list
TOUCH_PARTICIPANT = 2  # takes part on a touch screen, dragging a finger (the others use a mouse)
CLIP_S = 3.0
# Each cell's visits are drawn from (seed, participant, video), so every run shows the same data up
# to timing jitter (the cursor moves on each ~60 ms poll, so a visit's edges shift by a frame or
# so). Under no true change a window's CI excludes 0 in 5 % of draws by design; with this seed the
# placebo's early-window CI includes 0 in every one of 300 simulated runs with that jitter, and in
# 293 with twice as much, while early_boost passes in 299.
VIEWER_SEED = 62
SCREENSHOT = REPO_ROOT / "docs" / "img" / "pretest_trial.png"


class DevTools(PageDevTools):
    """The page's DevTools session, with a participant's moves and clicks: a mouse, or on a touch
    screen (:meth:`use_touch`) a finger that drags the window and taps the buttons."""

    touch = False
    finger_down = False

    def use_touch(self, on: bool) -> None:
        self.call("Emulation.setTouchEmulationEnabled", enabled=on, maxTouchPoints=1)
        self.touch = on

    def move(self, x: float, y: float) -> None:
        if not self.touch:
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="none", buttons=0)
            return
        kind = "touchMove" if self.finger_down else "touchStart"
        self.call("Input.dispatchTouchEvent", type=kind, touchPoints=[{"x": x, "y": y}])
        self.finger_down = True

    def lift(self) -> None:
        if self.finger_down:
            self.call("Input.dispatchTouchEvent", type="touchEnd", touchPoints=[])
            self.finger_down = False

    def click(self, x: float, y: float) -> None:
        if self.touch:  # a tap: the finger leaves the clip, touches the button and lifts
            self.lift()
            self.move(x, y)
            self.lift()
            return
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


def session_records(path: Path, kind: str) -> list[dict]:
    return [record for line in path.read_text().splitlines() if (record := json.loads(line))["kind"] == kind]


def participant_files(study: Path) -> list[Path]:
    """The session files the participants left (the collection side extends the test from here)."""
    return session_files(study)


def follow_clip(tools: DevTools, viewer: Viewer, screenshot: Path | None = None) -> bool:
    """Move the mouse as ``viewer`` looks while the clip plays; click the red dot when it shows.

    With ``screenshot`` (a boosted clip), the page is captured once mid-way through the boosted
    window with the cursor on the product's lower right corner, so the sharp window shows both
    the product and the sharp checkerboard around it (True returned), after checking the window
    canvas is drawn there.
    """
    shot = False
    while True:
        state = tools.evaluate(
            "(() => { const v = document.getElementById('video'), r = v.getBoundingClientRect(),"
            " d = document.getElementById('dot'), q = d.getBoundingClientRect();"
            " return [v.currentTime, v.duration, v.ended, r.left, r.top, r.width, r.height,"
            " d.style.display === 'block', q.left + q.width / 2, q.top + q.height / 2]; })()"
        )
        t, duration, ended, left, top, width, height, dot_shown, dot_x, dot_y = state
        if ended:
            tools.lift()
            return shot
        if dot_shown:
            tools.click(dot_x, dot_y)
            continue
        px, py = viewer.target(t, duration)
        if screenshot is not None and not shot and duration / 6 <= t < duration / 3:
            px, py = px + 0.08, py + 0.05  # still on the product (its half side: 0.094 x 0.056)
            tools.move(left + px * width, top + py * height)
            time.sleep(0.1)  # a few displayed frames: the window is drawn from the current frame
            drawn = tools.evaluate(
                f"document.getElementById('window').getContext('2d')"
                f".getImageData({px * width:.0f}, {py * height:.0f}, 1, 1).data[3]"
            )
            assert drawn == 255, "the sharp window is not drawn under the cursor"
            save_screenshot(tools, screenshot)
            shot = True
            continue
        tools.move(left + px * width, top + py * height)
        time.sleep(0.03)


def save_screenshot(tools: DevTools, path: Path) -> None:
    """The trial's part of the page (the title line and the clip, a margin around it), full resolution."""
    left, right, bottom = tools.evaluate(
        "(() => { const r = document.getElementById('video').getBoundingClientRect();"
        " return [r.left, r.right, r.bottom]; })()"
    )
    shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and float(image.std()) > 5.0, "the trial page looks blank"
    margin = 60
    image = image[: int(bottom) + margin, max(int(left) - margin, 0) : int(right) + margin]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


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
        video_id = trials[index - 1]["video_id"] if index else "practice"
        viewer = Viewer.drawn((VIEWER_SEED, number, video_id), boosted)
        shot = follow_clip(tools, viewer, None if shot or not boosted else screenshot) or shot
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


@dataclass
class PretestRun:
    """What the scripted participants left: the data directory, the study, their completion codes."""

    data: Path
    study: Path
    codes: list[str]


def run_participants(chromium: Path, root: Path, screenshot: Path) -> PretestRun:
    """Build and serve the study, and take it in Chromium as :data:`PARTICIPANTS` participants."""
    data = make_pretest_data(root / "data", videos=3, seconds=CLIP_S)
    study = build_study_cli(data)
    port, debug_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = start_server("align-pretest", serve_argv(study, port), root / "serve.log", env=env)
    browser = None
    codes = []
    try:
        url = f"http://{LOOPBACK}:{port}/"
        wait_until(lambda: http_ok(url), 60, alive=server.alive, what="align-pretest", on_fail=server.log_tail)
        browser = start_server("chromium", chromium_argv(chromium, root / "profile", debug_port), root / "c.log")
        version = f"http://{LOOPBACK}:{debug_port}/json/version"
        wait_until(lambda: http_ok(version), 60, alive=browser.alive, what="chromium", on_fail=browser.log_tail)
        tools = DevTools(debug_port)
        try:
            tools.call("Page.enable")
            for number in range(PARTICIPANTS):
                tools.use_touch(number == TOUCH_PARTICIPANT)
                codes.append(take_part(tools, url, number, screenshot if number == 0 else None))
        finally:
            tools.close()
    finally:
        if browser is not None:
            browser.stop()
        server.stop()
    return PretestRun(data, study, codes)


@pytest.fixture(scope="module")
def pretest_run(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> PretestRun:
    """The participants' run, shared by the file test and the loop test (it takes about a minute)."""
    root = tmp_path_factory.mktemp("pretest")
    screenshot = SCREENSHOT if os.environ.get("ALIGN_PRETEST_SCREENSHOT") else root / "trial.png"
    return run_participants(chromium_path, root, screenshot)


def test_scripted_participants_leave_their_cursor_samples_in_the_session_files(pretest_run: PretestRun) -> None:
    study = pretest_run.study
    study_code = json.loads((study / "study.json").read_text())["completion_code"]
    assert pretest_run.codes == [study_code] * PARTICIPANTS
    files = participant_files(study)
    assert len(files) == PARTICIPANTS
    records = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    text = "".join(path.read_text() for path in files)
    assert "participant-" not in text and "HeadlessChrome" not in text and LOOPBACK not in text
    kinds = {r["kind"] for r in records}
    assert {"session", "cursor", "attention_check", "realism", "complete"} <= kinds
    checks = [r for r in records if r["kind"] == "attention_check"]
    assert checks and all(r["clicked"] for r in checks)
    pointers = sorted("+".join(sorted({r["pointer"] for r in session_records(path, "cursor")})) for path in files)
    assert pointers == ["mouse", "mouse", "touch"], pointers  # what moved each participant's window
    batches = [r["batch_id"] for r in records]
    assert len(batches) == len(set(batches))
    samples = sum(len(r["samples"]) for r in records if r["kind"] == "cursor" and not r["practice"])
    assert samples >= PARTICIPANTS * 3 * CLIP_S * 5  # at least 5 samples per second of every trial
    boosted = on_product_share(records, "early_boost", first_third=True)
    assert boosted > 0.85
    for control in ("baseline", "placebo"):
        assert 0.05 < on_product_share(records, control, first_third=True) < 0.6
    late = [on_product_share(records, v, first_third=False) for v in ("baseline", "early_boost", "placebo")]
    assert 0.05 < min(late) and max(late) < 0.6


def collected_trials(layout: DataLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-trial a_t and the scorer card of every video, as ``human_attention`` computes them."""
    trials, cards = [], []
    for video_id in ("v1", "v2", "v3"):
        with read_connection(layout.warehouse_path) as con:
            cursor = con.execute("SELECT * FROM pretest_cursor WHERE video_id = ? ORDER BY ALL", [video_id]).df()
        video_trials, card = video_human_stage(layout, video_id, cursor)
        trials.append(video_trials)
        cards.append(card)
    return pd.concat(trials, ignore_index=True), pd.concat(cards, ignore_index=True)


def test_the_whole_loop_recovers_the_planted_boost_and_no_placebo_change(pretest_run: PretestRun) -> None:
    layout = DataLayout(pretest_run.data)
    study_id = pretest_run.study.name
    (report,) = collect_pretest(layout.root, layout.warehouse_path)  # what pretest_responses runs
    assert (report.study_id, report.sessions, report.duplicates) == (study_id, PARTICIPANTS, 0)
    assert report.rows["pretest_cursor"] >= PARTICIPANTS * 3 * CLIP_S * 5 and report.rows["pretest_realism"] > 0
    with read_connection(layout.warehouse_path) as con:
        frames = con.execute(
            "SELECT count(*) AS samples, count(DISTINCT frame_index) AS frames FROM pretest_cursor"
            " GROUP BY session_id, trial_index"
        ).df()
    assert (frames["frames"] >= 0.95 * frames["samples"]).all(), "samples of one displayed frame on another"
    with read_connection(layout.warehouse_path) as con:
        pointers = con.execute("SELECT pointer, count(DISTINCT session_id) FROM pretest_cursor GROUP BY ALL").fetchall()
    assert sorted(pointers) == [("mouse", PARTICIPANTS - 1), ("touch", 1)]
    trials, cards = collected_trials(layout)
    assert set(trials["variant"]) == {"baseline", "early_boost", "placebo"}
    assert trials.groupby("session_id")["video_id"].nunique().tolist() == [3] * PARTICIPANTS
    with read_connection(layout.warehouse_path) as con:
        sessions = con.execute("SELECT * FROM pretest_sessions").df()
        realism = con.execute("SELECT * FROM pretest_realism").df()
    assert sessions["completed"].all() and (sessions["attention_checks_passed"] > 0).all()
    # The check's default minimum is 10 participants per arm (a real pretest's floor); three
    # browser participants (one per Latin-square list, each seeing every variant once) are
    # enough for this planted difference and keep the test near a minute.
    thresholds = HumanCheckThresholds(min_participants=PARTICIPANTS)
    studies = {study_id: load_collected_study(layout.root, study_id)}
    tables = pretest_check_tables(layout.warehouse_path, studies, trials, cards, realism, thresholds, sessions)
    check = tables["pretest_human_check"].set_index(["variant", "window"])
    print("\n" + check[["estimate", "ci_low", "ci_high", "verdict", "participants"]].to_string())
    boost, placebo = check.loc[("early_boost", "early")], check.loc[("placebo", "early")]
    assert boost["verdict"] == "passed" and boost["ci_low"] > 0
    assert 0.3 < boost["estimate"] < 0.9  # the product always in the window vs 10-50 % of the time
    assert placebo["verdict"] == "not passed" and placebo["ci_low"] < 0 < placebo["ci_high"]
    assert abs(placebo["estimate"]) < 0.15
    assert abs(check.loc[("early_boost", "late"), "estimate"]) < 0.15  # no change outside the boosted window
    verdicts = tables["pretest_human_verdicts"].set_index("variant")["human_check"].to_dict()
    assert verdicts["early_boost"] == "passed"  # its own window, as planned
    answers = tables["pretest_realism_summary"]
    assert set(answers["variant"]) == {"early_boost", "placebo"}
    assert answers["answers"].sum() == report.rows["pretest_realism"] == len(realism[realism["correct"].notna()])
