"""A tiny data directory an ``align-pretest build`` accepts: real H.264 variants, a registered
experiment and hand-written eligibility records (what ``variant_quality`` writes), no pipeline run.

Each video shows a yellow "product" square drifting left to right over a grey ground; the
variants differ a little in brightness (the study does not care what the edit is). Shared by
``tests/test_pretest_server.py``, ``tests/system/test_pretest_browser.py`` and
``bench/bench_pretest_load.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from align_core.experiments.config import ExperimentConfig, register_experiment_config
from align_core.experiments.eligibility import eligibility_table
from align_core.io.hashing import file_sha256
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter

__all__ = [
    "EXPERIMENT_ID",
    "VARIANTS",
    "build_study_cli",
    "make_pretest_data",
    "product_centre",
    "serve_argv",
    "session_files",
]

EXPERIMENT_ID = "pretest-demo"
VARIANTS = (
    {"name": "baseline", "kind": "identity", "role": "control"},
    {"name": "early_boost", "window": "early", "factor": 1.5, "kind": "boost"},
    {"name": "placebo", "window": "full", "factor": 1.5, "kind": "placebo"},
)
FPS = 15
WIDTH, HEIGHT = 96, 160


def product_centre(t_s: float, duration_s: float) -> tuple[float, float]:
    """Where the product is at media time ``t_s``, as a fraction of the frame (x, y)."""
    phase = min(max(t_s / duration_s, 0.0), 1.0)
    return 0.2 + 0.6 * phase, 0.35


def write_clip(path: Path, seconds: float, gain: float) -> None:
    frames = int(seconds * FPS)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with VideoWriter(path, FPS) as writer:
        for index in range(frames):
            cx, cy = product_centre(index / FPS, seconds)
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            frame[...] = (70 + 50 * ((xs // 6 + ys // 6) % 2))[..., None]  # a checkerboard: blur shows
            inside = (abs(xs - cx * WIDTH) < 9) & (abs(ys - cy * HEIGHT) < 9)
            frame[inside] = np.clip(np.array([220, 200, 40]) * gain, 0, 255).astype(np.uint8)
            writer.write(frame)


def make_pretest_data(root: Path, videos: int = 3, seconds: float = 2.0, failed: tuple[str, str] | None = None) -> Path:
    """``root`` as a data directory with ``videos`` videos in every variant, all eligible but ``failed``
    (``(video_id, variant)``, whose manipulation check is recorded as failed)."""
    layout = DataLayout(root)
    register_experiment_config(layout.warehouse_path, ExperimentConfig(EXPERIMENT_ID, variants=VARIANTS))
    for number in range(1, videos + 1):
        video_id = f"v{number}"
        rows, verdicts = [], []
        for index, spec in enumerate(VARIANTS):
            path = layout.variant_video(video_id, spec["name"])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_clip(path, seconds, 1.0 + 0.1 * index)
            digest = file_sha256(path)
            rows.append(
                {
                    "video_id": video_id,
                    "variant": spec["name"],
                    "path": str(path.relative_to(layout.root)),
                    "sha256": digest,
                }
            )
            status = "failed" if failed == (video_id, spec["name"]) else "passed"
            verdicts.append(
                {"variant": spec["name"], "status": status, "reason": "planted" if status == "failed" else None}
            )
        pd.DataFrame(rows).to_parquet(layout.artifact("variant_videos", "rows", video_id))
        checked = {r["variant"]: r["sha256"] for r in rows}
        table = eligibility_table(video_id, pd.DataFrame(verdicts), checked)
        target = layout.artifact("variant_quality", "eligibility", video_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(target)
    return root


def build_study_cli(root: Path, *extra: str) -> Path:
    """Run the real ``align-pretest build`` on ``root``; the study folder it wrote."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    argv = [sys.executable, "-m", "align_core.cli.pretest", "build", EXPERIMENT_ID, "--data-dir", str(root), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study_id = extra[extra.index("--study-id") + 1] if "--study-id" in extra else f"{EXPERIMENT_ID}-pretest"
    return root / "pretest" / study_id


def serve_argv(study: Path, port: int) -> list[str]:
    """The real ``align-pretest serve`` command for ``study`` on 127.0.0.1:``port``."""
    import sys

    return [sys.executable, "-m", "align_core.cli.pretest", "serve", str(study), "--port", str(port)]


def session_files(study: Path) -> list[Path]:
    """Every session file of a served study (what the collector reads)."""
    return sorted((study / "sessions").glob("*.jsonl"))
