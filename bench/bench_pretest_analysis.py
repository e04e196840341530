"""Benchmark: the pretest analysis at real size (collect -> per-trial human alignment -> the check).

Writes ``--participants`` session files in the contract's format (one cursor sample per displayed
frame, batches of 60 samples = 2 s at 30 Hz) for ``--videos`` real-size ads (1080x1920, 30 fps,
``--seconds`` long) in three variants over a Latin square, then times
:func:`~align_core.pretest.collect.collect_pretest` into a fresh DuckDB file,
:func:`~align_core.pretest.human_maps.trial_alignment` per video (analysis grid of 128 px on the
long side, masks pooled once per video) and :func:`~analysis.pretest.human_manipulation_check`.
Prints the times, rows and peak memory as JSON.

Usage: ``python bench/bench_pretest_analysis.py [--participants 60] [--videos 3] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = ("baseline", "early_boost", "placebo")
WIDTH, HEIGHT, FPS = 1080, 1920, 30.0


class BoxMasks:
    """The product box on every frame, decoded one frame at a time (a real-size stack is 1.2 GB)."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
        self.mask[200:800, 600:1000] = True

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: int) -> np.ndarray:
        return self.mask


def write_study(root: Path, participants: int, videos: list[str], frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    study_dir = root / "pretest" / "bench"
    (study_dir / "sessions").mkdir(parents=True, exist_ok=True)
    lists = [[{"video_id": v, "variant": VARIANTS[(k + j) % 3]} for j, v in enumerate(videos)] for k in range(3)]
    study = {"study_id": "bench", "experiment_id": "bench", "design_sha256": "0" * 64, "window_deg": 2.0}
    study |= {"viewing": {"distance_cm": 30.0, "screen_height_cm": 14.0}, "lists": lists}
    study["videos"] = [
        {"video_id": v, "fps": FPS, "n_frames": frames, "width": WIDTH, "height": HEIGHT, "variants": []}
        for v in videos
    ]
    (study_dir / "study.json").write_text(json.dumps(study))
    for k in range(participants):
        session_id = uuid.uuid4().hex
        lines = [{"kind": "session", "session_id": session_id, "batch_id": uuid.uuid4().hex, "list_index": k % 3}]
        for trial, item in enumerate(lists[k % 3]):
            p = np.full(frames, 0.3) + (np.arange(frames) < frames // 3) * (
                0.2 if item["variant"] == "early_boost" else 0
            )
            on = rng.random(frames) < p
            x = np.where(on, rng.uniform(0.58, 0.9, frames), rng.uniform(0.0, 0.5, frames))
            y = np.where(on, rng.uniform(0.12, 0.4, frames), rng.uniform(0.5, 1.0, frames))
            samples = np.column_stack([(np.arange(frames) + 0.5) / FPS, x, y]).round(4).tolist()
            for start in range(0, frames, 60):
                lines.append(
                    {"kind": "cursor", "session_id": session_id, "batch_id": uuid.uuid4().hex, "trial_index": trial}
                    | {"video_id": item["video_id"], "variant": item["variant"], "practice": False}
                    | {"samples": samples[start : start + 60]}
                )
        (study_dir / "sessions" / f"{session_id}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    import duckdb
    import pandas as pd

    from align_core.pretest.collect import collect_pretest, load_study
    from align_core.pretest.human_maps import trial_alignment
    from align_core.stimuli.plans import DEFAULT_VARIANTS
    from analysis.pretest import human_manipulation_check, trial_window_means

    frames = int(args.seconds * FPS)
    videos = [f"ad{i}" for i in range(args.videos)]
    with tempfile.TemporaryDirectory(prefix="bench_pretest_") as tmp:
        root = Path(tmp)
        write_study(root, args.participants, videos, frames)
        started = time.perf_counter()
        report = collect_pretest(root, root / "warehouse.duckdb")[0]
        collect_s = time.perf_counter() - started
        with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
            cursor = con.execute("SELECT * FROM pretest_cursor").df()
        study = load_study(root, "bench")
        started = time.perf_counter()
        trials = pd.concat(
            [
                trial_alignment(cursor[cursor["video_id"] == v["video_id"]], v, study, BoxMasks(frames))
                for v in study["videos"]
            ]
        )
        maps_s = time.perf_counter() - started
        started = time.perf_counter()
        specs = [s for s in DEFAULT_VARIANTS if s.name in VARIANTS]
        check = human_manipulation_check(trial_window_means(trials), specs, "baseline")
        check_s = time.perf_counter() - started
    boosted = check[(check["variant"] == "early_boost") & (check["window"] == "early")].iloc[0]
    print(
        json.dumps(
            {
                "participants": args.participants,
                "videos": args.videos,
                "frames_per_video": frames,
                "cursor_rows": report.rows["pretest_cursor"],
                "collect_s": round(collect_s, 2),
                "human_alignment_s": round(maps_s, 2),
                "trials": args.participants * args.videos,
                "ms_per_trial": round(1000 * maps_s / (args.participants * args.videos), 1),
                "check_s": round(check_s, 2),
                "early_boost_early": {k: round(float(boosted[k]), 4) for k in ("estimate", "ci_low", "ci_high")},
                "verdict": boosted["verdict"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
