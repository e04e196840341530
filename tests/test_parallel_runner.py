"""The command-line runners' video workers: a per-video wave runs several videos at once, one
Dagster run per video in its own process, and a failing video fails alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance

from align_assets.recovery import PID_TAG
from align_assets.runner import materialize_everything, prepare_instance
from align_core.io.layout import DataLayout
from align_demo.corpus import generate_demo_corpus

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_two_workers_materialize_each_video_in_its_own_process(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    corpus = generate_demo_corpus(
        layout,
        n_videos=3,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(4.0, 4.5),
    )
    broken = corpus.video_ids[0]
    (layout.videos_dir / f"{broken}.mp4").write_bytes(b"not an mp4")  # this one must fail alone
    # the workers build their definitions from the environment, as a command-line run does
    monkeypatch.setenv("ALIGN_DATA_DIR", str(layout.root))
    monkeypatch.setenv("ALIGN_PROFILE", "demo")
    prepare_instance(layout.dagster_home)
    lines: list[str] = []
    with DagsterInstance.get() as instance:
        failures = materialize_everything(
            corpus.video_ids,
            instance=instance,
            assets=["video_catalog", "attention_maps"],
            workers=2,
            log=lines.append,
        )
        assert set(failures) == {broken}, failures
        assert broken in failures[broken][0] or "video_catalog" in failures[broken][0]
        assert any("2 at a time" in line for line in lines), lines
        records = instance.fetch_materializations(AssetKey("attention_maps"), limit=10).records
        runs = {r.partition_key: instance.get_run_by_id(r.run_id) for r in records}
        assert set(runs) == set(corpus.video_ids[1:])
        pids = {run.tags.get(PID_TAG) for run in runs.values()}
        assert None not in pids and str(os.getpid()) not in pids  # the workers ran them, not this process


def test_stopping_the_workers_kills_one_that_outlives_sigterm() -> None:
    """A Dagster step turns SIGTERM into a cancellation and its worker lives on: Ctrl-C must still stop it."""
    import signal
    import time

    from align_assets.runner import VideoWorkers

    workers = VideoWorkers(1)
    workers._executor.submit(signal.signal, signal.SIGTERM, signal.SIG_IGN).result(timeout=120)
    workers._executor.submit(time.sleep, 300)
    processes = list(workers._executor._processes.values())
    started = time.perf_counter()
    workers.terminate()
    assert processes and not any(p.is_alive() for p in processes)
    assert time.perf_counter() - started < 30


def test_largest_videos_start_first(tmp_path: Path) -> None:
    """Longest-processing-time first: the long video starts at once, not last and alone; a broken file sorts last."""
    from align_assets.runner import largest_first
    from align_core.io.video_io import VideoWriter

    layout = DataLayout(tmp_path / "data").ensure()
    frames = {"short_small": (4, 64, 48), "long_small": (12, 64, 48), "short_large": (6, 128, 96)}
    for key, (count, height, width) in frames.items():
        with VideoWriter(layout.videos_dir / f"{key}.mp4", fps=12) as writer:
            for t in range(count):
                writer.write(np.full((height, width, 3), 10 * t, np.uint8))
    (layout.videos_dir / "broken.mp4").write_bytes(b"not an mp4")
    keys = ["broken", "short_small", "long_small", "short_large", "missing"]
    assert largest_first(layout, keys) == ["short_large", "long_small", "short_small", "broken", "missing"]
