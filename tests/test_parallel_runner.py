"""The command-line runners' video workers: a per-video wave runs several videos at once, one
Dagster run per video in its own process, and a failing video fails alone."""

from __future__ import annotations

import os
import shutil
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
    """A Dagster step turns SIGTERM into a cancellation and its worker lives on: Ctrl-C must still stop it.

    A stopped process (SIGSTOP) holds SIGTERM pending, as such a worker does; only SIGKILL ends it.
    """
    import signal
    import time

    from align_assets.runner import VideoWorkers
    from align_core.io.atomic import process_alive

    workers = VideoWorkers(1)
    (pid,) = workers.start()
    os.kill(pid, signal.SIGSTOP)
    started = time.perf_counter()
    workers.terminate()
    assert not process_alive(pid) and workers.pids == []
    assert time.perf_counter() - started < 30


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_killing_one_worker_fails_only_its_video_and_its_run(tmp_path: Path, shared_data: Path) -> None:
    """Issue 21 item 6: SIGKILL of one worker under ``--workers 2`` used to fail every video with
    BrokenProcessPool, terminate the live worker mid-run and leave the killed run STARTED."""
    import signal
    import subprocess
    import sys
    import time

    from dagster import DagsterRunStatus

    layout = DataLayout(tmp_path / "data").ensure()
    clips = {"bottle": "intel_bottle-detection.mp4", "fruit": "fruit-and-vegetable-detection.mp4", "help": "help.mkv"}
    for key, name in clips.items():
        shutil.copyfile(shared_data / "videos" / name, layout.videos_dir / f"{key}{Path(name).suffix}")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    env["DAGSTER_HOME"] = str(layout.dagster_home)
    command = [sys.executable, "-m", "align_assets.backfill", "--data-dir", str(layout.root), "--workers", "2"]
    command += ["--asset", "video_catalog", "--asset", "attention_maps"]
    # Output goes to files, not pipes: a process the killed worker had started (Dagster's compute-log
    # ``tail -F``, when the kill lands before its orphan watcher starts) may hold them open after the
    # command has exited, and waiting for a pipe's end would then wait for that process.
    out_path, err_path = tmp_path / "backfill.out", tmp_path / "backfill.err"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        child = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out_file, stderr=err_file, text=True)
    try:
        deadline = time.monotonic() + 300
        while "\n== per-video" not in "\n" + out_path.read_text():  # the child has set its instance up
            assert child.poll() is None, "align-backfill ended before its per-video wave"
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        victim = _wait_for_running_worker(layout, "bottle", deadline=time.monotonic() + 300)
        os.kill(victim, signal.SIGKILL)
        child.wait(timeout=600)
        out, err = out_path.read_text(), err_path.read_text()
    finally:
        if child.poll() is None:
            child.kill()
        _kill_strays(str(tmp_path))
    assert child.returncode == 1, (out, err)
    status = {
        line.split()[0]: line.split()[1]
        for line in out.splitlines()
        if line.startswith("   ") and len(line.split()) == 4
    }
    assert status == {"bottle": "FAILED", "fruit": "ok", "help": "ok"}, out
    assert f"bottle: its worker process (pid {victim}) died (killed by SIGKILL)" in err, err
    assert "BrokenProcessPool" not in out + err and not any(
        line.startswith(("fruit:", "help:")) for line in err.splitlines()
    )
    with DagsterInstance.from_config(str(layout.dagster_home)) as instance:
        runs = {run.tags["dagster/partition"]: run for run in instance.get_runs()}
        assert {key: run.status for key, run in runs.items()} == {
            "bottle": DagsterRunStatus.FAILURE,
            "fruit": DagsterRunStatus.SUCCESS,
            "help": DagsterRunStatus.SUCCESS,
        }
        assert runs["bottle"].tags[PID_TAG] == str(victim)


def _kill_strays(marker: str) -> None:
    """SIGKILL any process left behind whose command line names ``marker`` (this test's directory)."""
    import signal

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


def _wait_for_running_worker(layout: DataLayout, key: str, deadline: float) -> int:
    """The pid of the worker whose run of ``key`` has started (read from the run's tags)."""
    import time

    from dagster import DagsterRunStatus

    with DagsterInstance.from_config(str(layout.dagster_home)) as instance:
        while time.monotonic() < deadline:
            for run in instance.get_runs():
                if run.tags.get("dagster/partition") == key and run.status == DagsterRunStatus.STARTED:
                    return int(run.tags[PID_TAG])
            time.sleep(0.05)
    raise AssertionError(f"no started run for {key}")


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
