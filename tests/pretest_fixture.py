"""A tiny data directory an ``align-pretest build`` accepts: real H.264 variants, a registered
experiment and hand-written eligibility records (what ``variant_quality`` writes), no pipeline run.

Each video shows a yellow "product" square drifting left to right over a grey ground; the
variants differ a little in brightness (the study does not care what the edit is). Shared by
``tests/test_pretest_server.py``, ``tests/system/test_pretest_browser.py`` and
``bench/bench_pretest_load.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from align_core.experiments.config import ExperimentConfig, register_experiment_config
from align_core.experiments.eligibility import eligibility_table
from align_core.io.hashing import file_sha256
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter
from align_core.perception.masks import KeywordMasks, save_keyword_masks

__all__ = [
    "EXPERIMENT_ID",
    "FPS",
    "VARIANTS",
    "Viewer",
    "build_study_cli",
    "make_pretest_data",
    "product_centre",
    "product_masks",
    "serve_argv",
    "session_files",
    "write_product_masks",
]

EXPERIMENT_ID = "pretest-demo"
VARIANTS = (
    {"name": "baseline", "kind": "identity", "role": "control"},
    {"name": "early_boost", "window": "early", "factor": 1.5, "kind": "boost"},
    {"name": "placebo", "window": "full", "factor": 1.5, "kind": "placebo"},
)
FPS = 15
WIDTH, HEIGHT = 96, 160
HALF_BOX = 9  # the product square's half side, pixels


def product_centre(t_s: float, duration_s: float) -> tuple[float, float]:
    """Where the product is at media time ``t_s``, as a fraction of the frame (x, y)."""
    phase = min(max(t_s / duration_s, 0.0), 1.0)
    return 0.2 + 0.6 * phase, 0.35


VISITS_PER_S = 1.0  # outside the boosted window a scripted viewer visits the product once a second
VISIT_SHARE = (0.1, 0.5)  # for this share of the second (drawn per trial): one visit per window of a 3 s clip
BELOW_PRODUCT = 0.8  # where the cursor rests between visits (frame fraction; the product is at 0.35)


@dataclass(frozen=True)
class Viewer:
    """How a scripted participant looks during one clip: on the product throughout the first third
    of a boosted clip (the planted difference), otherwise on it for ``visit_share`` of every visit
    cycle and below it the rest of the time."""

    boosted: bool
    visit_share: float
    visit_phase: float

    @classmethod
    def drawn(cls, key: tuple[int, int, str], boosted: bool) -> Viewer:
        """The viewer of one cell, ``key = (seed, participant number, video_id)``: drawn from the
        cell alone, so the trial order the server shuffles does not change what a cell sees."""
        seed, participant, video_id = key
        video_number = int(video_id[1:]) if video_id[1:].isdigit() else 0  # v1, v2, ...; the practice clip: 0
        rng = np.random.default_rng([seed, participant, video_number])
        return cls(boosted, float(rng.uniform(*VISIT_SHARE)), float(rng.uniform()))

    def on_product(self, t: float, duration: float) -> bool:
        if self.boosted and t < duration / 3:
            return True
        return (t * VISITS_PER_S + self.visit_phase) % 1.0 < self.visit_share

    def target(self, t: float, duration: float) -> tuple[float, float]:
        """Where the cursor goes at media time ``t`` (frame fractions)."""
        px, py = product_centre(t, duration)
        return (px, py) if self.on_product(t, duration) else (px, BELOW_PRODUCT)


def product_masks(seconds: float) -> np.ndarray:
    """bool ``(T, H, W)``: where the product square is on each frame of a ``seconds`` clip."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    masks = np.zeros((int(seconds * FPS), HEIGHT, WIDTH), dtype=bool)
    for index in range(len(masks)):
        cx, cy = product_centre(index / FPS, seconds)
        masks[index] = (abs(xs - cx * WIDTH) < HALF_BOX) & (abs(ys - cy * HEIGHT) < HALF_BOX)
    return masks


def write_clip(path: Path, seconds: float, gain: float) -> None:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with VideoWriter(path, FPS) as writer:
        for inside in product_masks(seconds):
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            frame[...] = (70 + 50 * ((xs // 6 + ys // 6) % 2))[..., None]  # a checkerboard: blur shows
            frame[inside] = np.clip(np.array([220, 200, 40]) * gain, 0, 255).astype(np.uint8)
            writer.write(frame)


def write_product_masks(layout: DataLayout, video_id: str, seconds: float) -> None:
    """The video's ``keyword_masks`` artifact: the known product box, by the platform's own mask writer."""
    masks = product_masks(seconds)
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    result = KeywordMasks(masks, 0.5, "fixture-box", "product", coverage, np.ones(len(masks), np.float32))
    save_keyword_masks(layout.artifact("keyword_masks", "masks", video_id), result)


def make_pretest_data(root: Path, videos: int = 3, seconds: float = 2.0, failed: tuple[str, str] | None = None) -> Path:
    """``root`` as a data directory with ``videos`` videos in every variant, all eligible but ``failed``
    (``(video_id, variant)``, whose manipulation check is recorded as failed), and each video's
    product masks (what the human alignment is measured against)."""
    layout = DataLayout(root)
    register_experiment_config(layout.warehouse_path, ExperimentConfig(EXPERIMENT_ID, variants=VARIANTS))
    for number in range(1, videos + 1):
        video_id = f"v{number}"
        write_product_masks(layout, video_id, seconds)
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
