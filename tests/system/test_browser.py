"""Headless Chromium against the real webserver: the Dagster UI renders the platform's assets.

The UI is a client-side React app, so the HTML the server sends names no asset; the asset name
appears in the DOM only after the app has loaded, queried GraphQL and rendered. Chromium runs
with a virtual-time budget so that happens before the screenshot / DOM dump is taken.
Screenshots go to pytest's tmp_path and, when ``ALIGN_SCREENSHOT_DIR`` is set, are copied there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from .conftest import CatalogRun, Webserver
from .servers import http_get

pytestmark = pytest.mark.system

WIDTH, HEIGHT = 1400, 900
CHROMIUM_TIMEOUT_S = 90


def _chromium(chromium: Path, profile_dir: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [
        str(chromium),
        "--headless",
        "--no-sandbox",  # root in a container: the setuid sandbox is unavailable
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=15000",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, timeout=CHROMIUM_TIMEOUT_S, start_new_session=True)
    if result.returncode != 0:
        raise AssertionError(f"chromium exited {result.returncode}: {result.stderr.decode(errors='replace')[-3000:]}")
    return result


def _screenshot(chromium: Path, url: str, out: Path, profile_dir: Path) -> np.ndarray:
    _chromium(chromium, profile_dir, f"--screenshot={out}", url)
    assert out.is_file() and out.stat().st_size > 0, f"no screenshot written for {url}"
    image = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert image is not None, f"{out} is not a decodable image"
    assert image.shape[:2] == (HEIGHT, WIDTH), image.shape
    keep = os.environ.get("ALIGN_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(keep) / out.name)
    return image


def _assert_not_blank(image: np.ndarray, name: str) -> None:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert float(gray.std()) > 8.0, f"{name} looks blank (pixel std {gray.std():.2f})"
    # Text and widgets give many distinct grey levels; an error page or a spinner gives few.
    assert len(np.unique(gray)) > 32, f"{name} has only {len(np.unique(gray))} grey levels"


def test_server_html_names_no_asset(dagster_webserver: Webserver) -> None:
    """Baseline for the DOM test below: without running the app, the page does not name the asset."""
    status, body = http_get(f"{dagster_webserver.url}/assets/video_catalog")
    assert status == 200
    assert b"video_catalog" not in body


def test_asset_graph_and_asset_page_render(
    chromium_path: Path, dagster_webserver: Webserver, catalog_run: CatalogRun, tmp_path: Path
) -> None:
    base = dagster_webserver.url
    graph = _screenshot(chromium_path, f"{base}/asset-groups", tmp_path / "asset-graph.png", tmp_path / "profile-graph")
    _assert_not_blank(graph, "asset graph")
    page = _screenshot(
        chromium_path, f"{base}/assets/video_catalog", tmp_path / "asset-video_catalog.png", tmp_path / "profile-asset"
    )
    _assert_not_blank(page, "asset page")


def test_asset_page_dom_names_the_asset(
    chromium_path: Path, dagster_webserver: Webserver, catalog_run: CatalogRun, tmp_path: Path
) -> None:
    result = _chromium(
        chromium_path, tmp_path / "profile-dom", "--dump-dom", f"{dagster_webserver.url}/assets/video_catalog"
    )
    dom = result.stdout.decode(errors="replace")
    assert "<html" in dom.lower(), dom[:500]
    assert "video_catalog" in dom, f"rendered DOM does not name the asset:\n{dom[:3000]}"
    # The overview shows the latest materialization (the GraphQL-launched run) and its metadata.
    for text in ("real-help", "frame_count", "keyword_verdict", "640x480"):
        assert text in dom, f"rendered asset page lacks {text!r}"
    (tmp_path / "asset-video_catalog.html").write_text(dom)
    keep = os.environ.get("ALIGN_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "asset-video_catalog.html").write_text(dom)
