"""A backfill on real Celery workers, run from the commands in deploy/README.md.

Starts Debian's ``redis-server`` (broker and result backend) and PostgreSQL (run storage through
``deploy/dagster.postgres.yaml``) on loopback, creates the schema with the README's
``dagster instance migrate``, starts the README's two CPU workers and its
``gpu`` worker with the shipped ``deploy/celery-worker.yaml``, and runs the README's
``python deploy/scale_out.py backfill`` with ``ALIGN_EXECUTOR=celery`` over two small demo
videos. The same launcher with ``ALIGN_EXECUTOR=in_process`` on a copy of the same inputs is
the reference. Then the event log (read from Postgres) must show every step in a worker process
(not the launcher's), both CPU workers busy, the checkpoint step on the ``gpu`` worker only, and
the artifacts and warehouse tables must equal the in-process run's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from align_core.io.layout import DataLayout

from .conftest import REPO_ROOT, VENV_BIN, Postgres, Redis
from .servers import ServerProcess, group_members, start_server, wait_until

pytestmark = [pytest.mark.system, pytest.mark.slow]

README = REPO_ROOT / "deploy" / "README.md"
COMMANDS_MARKER = "<!-- celery-commands -->"
DB_NAME = "dagster_celery"
GPU_STEP = "controlnet_checkpoint"
#: Few training steps and sparse quality measurements: the point is where steps run, not quality.
FAST_RUN_CONFIG = {
    "ops": {
        "controlnet_checkpoint": {
            "config": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "validate_every": 2, "warmup_steps": 1}
        },
        "variant_quality": {
            "config": {"measure_every": 4, "check_max_frames": 12, "max_frames": 12, "lpips_every": 48}
        },
        "variant_videos": {"config": {"propagation": "keyframes", "keyframe_stride": 6}},
    }
}
#: The warehouse is compared table by table; lock files are empty markers. Every other file is
#: compared byte for byte (both runs use the same absolute data directory, so paths match too),
#: except JSON files, which are compared without their wall-clock timings (below).
#: The warehouse is compared table by table below; the registry files (experiments/<id>.experiment.json)
#: are a copy of its registry tables, wall-clock ``registered_at`` included, so they are compared there too.
NOT_COMPARED = ("warehouse.duckdb", ".lock", ".experiment.json")
#: JSON keys that hold how long something took, which differs between any two runs.
TIMING_KEYS = ("timings_s", "seconds", "ocr_seconds_per_keyframe")
#: Without the AlexNet weights (not shipped), LPIPS runs on a randomly initialised AlexNet whose
#: weights depend on the process's torch RNG state: its values differ between a worker process and
#: the in-process run, as they would between any two processes. Only then is the column left out.
RANDOM_LPIPS = "random-alexnet"


def readme_commands() -> tuple[list[str], list[list[str]], list[str]]:
    """The schema line, the worker command lines and the backfill line of deploy/README.md's Celery block."""
    text = README.read_text()
    if COMMANDS_MARKER not in text:
        raise AssertionError(f"{README} lost its {COMMANDS_MARKER} block")
    block = text.split(COMMANDS_MARKER, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [shlex.split(line) for line in block.strip().splitlines()]
    workers = [argv for argv in lines if argv[0] == "dagster-celery"]
    backfills = [argv for argv in lines if argv[:3] == ["python", "deploy/scale_out.py", "backfill"]]
    # The schema must exist before the workers start: workers racing to create it fail (see the README).
    assert lines[0] == ["dagster", "instance", "migrate"], lines
    assert len(workers) == 3 and len(backfills) == 1, lines
    return lines[0], workers, backfills[0]


def backfill_argv(readme_line: list[str], video_ids: list[str]) -> list[str]:
    """The README's backfill line with the videos named and the short training config added."""
    assert readme_line[3:] == ["VIDEO_ID", "[VIDEO_ID", "...]"], readme_line
    return [sys.executable, *readme_line[1:3], *video_ids, "--config-json", json.dumps(FAST_RUN_CONFIG)]


def make_inputs(root: Path, shared_data: Path) -> list[str]:
    from align_demo.corpus import generate_demo_corpus

    corpus = generate_demo_corpus(
        DataLayout(root).ensure(),
        n_videos=2,
        seed=11,
        width=144,
        height=256,
        keywords_source=shared_data / "keywords.csv",
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(4.0, 4.0),
    )
    return list(corpus.video_ids)


def base_env(data_dir: Path, dagster_home: Path, executor: str) -> dict[str, str]:
    return {
        **os.environ,
        "ALIGN_DATA_DIR": str(data_dir),
        "ALIGN_PROFILE": "demo",
        "ALIGN_EXECUTOR": executor,
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def run_backfill(argv: list[str], env: dict[str, str], log: Path) -> None:
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (
        f"{shlex.join(argv[:4])} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-6000:]}"
    )


def create_schema(argv: list[str], env: dict[str, str], log: Path) -> None:
    done = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:]], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (
        f"{shlex.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}"
    )


def start_workers(commands: list[list[str]], env: dict[str, str], logs: Path) -> dict[str, ServerProcess]:
    workers: dict[str, ServerProcess] = {}
    for argv in commands:
        name = argv[argv.index("-n") + 1]
        workers[name] = start_server(
            f"celery worker {name}",
            [str(VENV_BIN / argv[0]), *argv[1:]],
            log_path=logs / f"{name}.log",
            env=env,
            cwd=REPO_ROOT,
        )
    for name, process in workers.items():
        wait_until(
            lambda p=process: " ready." in p.log_tail(20000),
            timeout=180,
            interval=0.5,
            alive=process.alive,
            what=f"celery worker {name} ready",
            on_fail=process.log_tail,
        )
    return workers


def create_database(postgres: Postgres) -> dict[str, str]:
    admin = postgres.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    admin.close()
    return {
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": DB_NAME,
    }


def step_pids(dagster_home: Path, pg_env: dict[str, str]) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """From the Postgres event log: each run's launcher pid, and (step key, pid) of every step start."""
    from dagster import DagsterEventType, DagsterInstance

    launchers: dict[str, int] = {}
    steps: list[tuple[str, int]] = []
    old = {key: os.environ.get(key) for key in [*pg_env, "DAGSTER_HOME"]}
    os.environ.update({**pg_env, "DAGSTER_HOME": str(dagster_home)})
    try:
        with DagsterInstance.get() as instance:
            for run in instance.get_runs():
                assert run.status.value == "SUCCESS", (run.run_id, run.status)
                for entry in instance.all_logs(run.run_id):
                    event = entry.dagster_event
                    if event is None:
                        continue
                    if event.event_type == DagsterEventType.RUN_START:
                        launchers[run.run_id] = event.pid
                    elif event.event_type == DagsterEventType.STEP_START:
                        steps.append((f"{run.run_id}:{event.step_key}", event.pid))
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return launchers, steps


def without_timings(value: object) -> object:
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def comparable_rows(relation: duckdb.DuckDBPyRelation) -> list[tuple]:
    """Rows as sorted text tuples, without wall-clock columns (``*_at`` stamps, the file modification
    times of the warehouse's bookkeeping) and without ``lpips`` when a random AlexNet measured it."""
    columns = [column for column in relation.columns if "mtime" not in column and not column.endswith("_at")]
    if "lpips" in columns and "lpips_backbone_state" in columns:
        states = {state for (state,) in relation.select("lpips_backbone_state").fetchall()}
        if all(str(state).startswith(RANDOM_LPIPS) for state in states):
            columns.remove("lpips")
    return sorted(tuple(str(value) for value in row) for row in relation.select(*columns).fetchall())


def parquet_rows(path: Path) -> list[tuple]:
    con = duckdb.connect()
    try:
        return comparable_rows(con.read_parquet(str(path)))
    finally:
        con.close()


def comparable(path: Path) -> object:
    if path.suffix == ".json":
        return without_timings(json.loads(path.read_text()))
    if path.suffix == ".parquet":
        return parquet_rows(path)
    return path.read_bytes()


def artifact_files(root: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(root)): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not any(part in str(path.relative_to(root)) for part in NOT_COMPARED)
    }


def warehouse_rows(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {name: comparable_rows(con.table(name)) for name in sorted(tables)}
    finally:
        con.close()


def test_celery_backfill_matches_in_process(
    redis_server: Redis, postgres_server: Postgres, shared_data: Path, tmp_path: Path
) -> None:
    schema_command, worker_commands, backfill_line = readme_commands()
    # Both runs use the same absolute data directory (paths are part of some artifacts and rows):
    # first the in-process reference, which is then moved aside, then the Celery run.
    inputs, data_dir, reference_data = tmp_path / "inputs", tmp_path / "data", tmp_path / "reference-data"
    video_ids = make_inputs(inputs, shared_data)
    argv = backfill_argv(backfill_line, video_ids)

    shutil.copytree(inputs, data_dir)
    reference_home = tmp_path / "reference_home"
    reference_home.mkdir()
    (reference_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run_backfill(argv, base_env(data_dir, reference_home, "in_process"), tmp_path / "reference.log")
    data_dir.rename(reference_data)
    shutil.copytree(inputs, data_dir)

    pg_env = create_database(postgres_server)
    celery_home = tmp_path / "celery_home"
    celery_home.mkdir()
    shutil.copyfile(REPO_ROOT / "deploy" / "dagster.postgres.yaml", celery_home / "dagster.yaml")
    env = {
        **base_env(data_dir, celery_home, "celery"),
        **pg_env,
        "ALIGN_CELERY_BROKER": redis_server.url(0),
        "ALIGN_CELERY_BACKEND": redis_server.url(1),
    }
    create_schema(schema_command, env, tmp_path / "schema.log")
    workers = start_workers(worker_commands, env, tmp_path / "workers")
    try:
        run_backfill(argv, env, tmp_path / "celery.log")
        worker_pids = {name: set(group_members(process.pid)) for name, process in workers.items()}
    finally:
        for process in workers.values():
            process.stop(timeout=30)

    launchers, steps = step_pids(celery_home, pg_env)
    assert set(launchers) == set(_launched_runs(tmp_path / "celery.log", video_ids)), launchers
    by_worker = {name: [step for step, pid in steps if pid in pids] for name, pids in worker_pids.items()}
    placed = {step for names in by_worker.values() for step in names}
    assert placed == {step for step, _ in steps}, f"steps outside the workers: {set(s for s, _ in steps) - placed}"
    assert not {pid for _, pid in steps} & set(launchers.values()), "a step ran in the launcher's process"
    assert by_worker["cpu-1"] and by_worker["cpu-2"], {name: len(found) for name, found in by_worker.items()}
    assert [step.split(":", 1)[1] for step in by_worker["gpu-1"]] == [GPU_STEP], by_worker["gpu-1"]
    assert_same_outputs(data_dir, reference_data)


def _launched_runs(log: Path, video_ids: list[str]) -> list[str]:
    """The run ids ``scale_out.py backfill`` printed: every wave runs each video once (one run per
    video per per-video wave) and the unpartitioned assets once per unpartitioned wave."""
    lines = [line.split() for line in log.read_text().splitlines() if " run " in line and line.rstrip().endswith("ok")]
    runs = {key: [parts[2] for parts in lines if parts[0] == key] for key in [*video_ids, "(unpartitioned)"]}
    waves = {len(runs[video]) for video in video_ids}
    assert len(waves) == 1 and waves != {0} and runs["(unpartitioned)"], runs
    return [run for ids in runs.values() for run in ids]


def assert_same_outputs(data_dir: Path, reference_data: Path) -> None:
    files, reference_files = artifact_files(data_dir), artifact_files(reference_data)
    assert len(reference_files) > 20 and any(name.endswith(".mp4") for name in reference_files), sorted(reference_files)
    assert sorted(files) == sorted(reference_files)
    differing = [name for name, path in reference_files.items() if comparable(files[name]) != comparable(path)]
    assert not differing, f"artifacts differ from the in-process run: {differing}"
    tables = warehouse_rows(DataLayout(data_dir).warehouse_path)
    reference_tables = warehouse_rows(DataLayout(reference_data).warehouse_path)
    assert set(tables) == set(reference_tables) and len(reference_tables) >= 5, sorted(reference_tables)
    for name, rows in reference_tables.items():
        assert tables[name] == rows, f"warehouse table {name} differs from the in-process run"
