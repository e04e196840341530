"""Fault suite, issue 15 item 1: a killed run must not block later runs; Ctrl-C must stop the CLI.

Through real subprocesses of ``align-backfill`` on a real persistent Dagster instance (SQLite
under ``<data>/dagster_home``, pools limited to 1 like ``make demo``):

- SIGKILL the CLI while ``variant_videos`` is writing (its ``.<id>.tmp-<pid>-*`` folder exists)
  and a run holding the ``gpu`` slot; the next run reports the dead runs, frees the slot, removes
  the temporary folder and finishes (before the fix it waited forever on "Step still blocked by
  limit for pool gpu").
- a live run holds the ``gpu`` slot: the CLI says on its console that it waits and for whom,
  and SIGINT stops it promptly with status 130 (before the fix it ignored SIGINT and SIGTERM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize

from align_assets.definitions import all_assets
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_assets.resources import ScorerResource, default_resources
from align_assets.runner import prepare_instance
from align_core.io.atomic import atomic_directory, reclaim_temporaries
from align_core.io.layout import DataLayout
from align_demo.corpus import generate_demo_corpus

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
PERCEPTION = [
    "video_catalog",
    "attention_maps",
    "keyword_masks",
    "control_tensors",
    "variant_plans",
    "protected_regions",
]


def _env(layout: DataLayout) -> dict[str, str]:
    return {
        **os.environ,
        "ALIGN_DATA_DIR": str(layout.root),
        "DAGSTER_HOME": str(layout.dagster_home),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONWARNINGS": "ignore",
        "PYTHONUNBUFFERED": "1",
    }


def _backfill(layout: DataLayout, asset: str = "variant_videos") -> list[str]:
    return [sys.executable, "-m", "align_assets.backfill", "--data-dir", str(layout.root), "--asset", asset]


@pytest.fixture()
def planned(tmp_path: Path, shared_data: Path, monkeypatch):
    """One 144x256 demo ad planned (catalog -> plans) in a persistent instance, as ``make demo`` leaves it."""
    layout = DataLayout(tmp_path / "data").ensure()
    made = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=144,
        height=256,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(3.75, 4.0),
    )
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    prepare_instance(layout.dagster_home)
    key = made.video_ids[0]
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, [key])
        result = materialize(
            all_assets,
            selection=[AssetKey(name) for name in PERCEPTION],
            partition_key=key,
            instance=instance,
            resources=default_resources(data_dir=layout.root, profile="demo", scorer=ScorerResource(max_long_side=128)),
            run_config={
                "ops": {"attention_maps": {"config": {"keyframe_stride": 12}}},
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
            },
        )
        assert result.success
    return layout, key


def _gpu_slots(layout: DataLayout) -> list:
    with DagsterInstance.from_config(str(layout.dagster_home)) as instance:
        return instance.event_log_storage.get_concurrency_info("gpu").claimed_slots


@pytest.mark.slow
def test_killed_run_is_reclaimed_and_the_next_run_finishes(planned) -> None:
    layout, key = planned
    out_dir = layout.artifacts_dir / "variant_videos"
    victim = subprocess.Popen(_backfill(layout), env=_env(layout), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    temporary = []
    while victim.poll() is None and time.monotonic() < deadline and not temporary:
        temporary = list(out_dir.glob(f".{key}.tmp-*")) if out_dir.exists() else []
        time.sleep(0.005)
    assert temporary, "variant_videos never started writing"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert list(out_dir.glob(f".{key}.tmp-*")), "the kill must leave the temporary folder behind"
    # The salience editor's renders take no gpu slot (only diffusion steps do): kill a run that holds one too.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "120"], env=_env(layout), stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait()
    assert len(_gpu_slots(layout)) == 1, "the killed run still holds the gpu slot"

    again = subprocess.run(_backfill(layout), env=_env(layout), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "had died" in again.stdout and "freed 1 pool slot" in again.stdout, again.stdout
    assert f".{key}.tmp-" in again.stdout  # the removed folder is named
    assert list(out_dir.glob(".*tmp-*")) == []
    assert (out_dir / key / "baseline.mp4").exists()
    assert _gpu_slots(layout) == []
    with DagsterInstance.from_config(str(layout.dagster_home)) as instance:
        statuses = [run.status for run in instance.get_runs()]
    assert DagsterRunStatus.STARTED not in statuses and DagsterRunStatus.FAILURE in statuses


HOLDER = textwrap.dedent(
    """
    import sys, time
    from dagster import DagsterInstance, asset, materialize

    @asset(pool="gpu")
    def holds_the_gpu() -> None:
        print("holding", flush=True)
        time.sleep(float(sys.argv[1]))

    materialize([holds_the_gpu], instance=DagsterInstance.get())
    """
)


@pytest.mark.slow
def test_blocked_cli_says_so_and_ctrl_c_stops_it(planned) -> None:
    layout, _ = planned
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "120"], env=_env(layout), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        # the checkpoint trains in the gpu pool (the demo's salience renders need no GPU, so no pool)
        # A terminal's Ctrl-C reaches a process whose SIGINT is not ignored; a test suite started in the
        # background (`make test &`) ignores it, and children inherit that, so the CLI starts as from a terminal.
        # PYTHONFAULTHANDLER: if Ctrl-C is not honoured in time, SIGABRT below makes it print where every thread is.
        cli = subprocess.Popen(
            _backfill(layout, "controlnet_checkpoint"),
            env={**_env(layout), "PYTHONFAULTHANDLER": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = cli.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "waiting for a slot in pool 'gpu'" in line:
                break
        assert any("waiting for a slot in pool 'gpu'" in line and "holds_the_gpu" in line for line in lines), lines
        started = time.monotonic()
        cli.send_signal(signal.SIGINT)
        try:
            rest, _ = cli.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            cli.send_signal(signal.SIGABRT)
            stacks, _ = cli.communicate(timeout=30)
            pytest.fail(f"Ctrl-C not honoured within 20 s; the CLI's threads were at:\n{stacks[:6000]}")
        assert time.monotonic() - started < 20
        assert cli.returncode == 130, "".join(lines) + rest
        assert "interrupted" in rest
        assert len(_gpu_slots(layout)) == 1  # the live holder keeps its slot
    finally:
        holder.kill()
        holder.wait()


def test_reclaim_temporaries_spares_live_writers_and_rolls_back_a_half_swap(tmp_path: Path) -> None:
    target = tmp_path / "video-1"
    target.mkdir()
    (target / "a.txt").write_text("old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".video-2.tmp-{dead.pid}-abcd1234").mkdir()
    (tmp_path / f".x.tmp-{dead.pid}-abcd1234.parquet").write_bytes(b"half")
    live = tmp_path / f".video-3.tmp-{os.getpid()}-abcd1234"
    live.mkdir()
    os.replace(target, tmp_path / f".video-1.old-{dead.pid}-abcd1234")  # killed between the two renames
    handled = reclaim_temporaries(tmp_path)
    assert len(handled) == 3
    assert (target / "a.txt").read_text() == "old" and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "video-1"]
    with atomic_directory(tmp_path / "video-4") as tmp:
        assert f".tmp-{os.getpid()}-" in tmp.name


def test_a_run_marked_cancelled_gives_its_slot_back(tmp_path: Path, monkeypatch) -> None:
    """Marking a dead run cancelled (as in the UI) left its slot claimed; reclaiming frees it."""
    from align_assets.recovery import reclaim_dead_runs

    layout = DataLayout(tmp_path / "data").ensure()
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    prepare_instance(layout.dagster_home)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "120"], env=_env(layout), stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.wait()
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        instance.report_run_canceled(run)
        assert len(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots) == 1
        reclaimed = reclaim_dead_runs(instance)
        assert reclaimed.freed_slots == {run.run_id: 1} and reclaimed.failed_runs == []
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots == []
