"""Where a scaled-out step's time goes: executors compared on the same small videos.

    python -m bench.bench_scale_out [--videos 2] [--modes in_process,multiprocess_spawn,...]

Runs ``python deploy/scale_out.py backfill`` over the cheap per-video assets (catalog,
attention, masks, protected regions, control tensors, plans) of a few 144x256 demo videos,
once per executor, each on a fresh copy of the same inputs and a fresh SQLite instance. From
each run's event log it splits the wall time into the steps' own compute (STEP_START to
STEP_SUCCESS) and the rest (process starts, imports, code-location loads, instance writes).
Also times a cold ``import align_assets.definitions`` and one code-location load. Celery modes
start ``redis-server`` and two workers with ``deploy/celery-worker.yaml`` (``celery_preloaded``:
the workers import the platform before forking their pool, ``-i align_assets.definitions``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "main",
    "run_mode",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHEAP_ASSETS = [
    "video_catalog",
    "attention_maps",
    "keyword_masks",
    "protected_regions",
    "control_tensors",
    "variant_plans",
]
MODES = ["in_process", "multiprocess_spawn", "multiprocess", "celery", "celery_preloaded"]
WORKER = ["dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", "deploy/celery-worker.yaml"]


def _env(data_dir: Path, home: Path, executor: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "ALIGN_DATA_DIR": str(data_dir),
        "ALIGN_PROFILE": "demo",
        "ALIGN_EXECUTOR": executor,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra or {}),
    }


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return time.perf_counter() - started


def _step_seconds(home: Path) -> tuple[int, float]:
    """Number of steps and the sum of their STEP_START..STEP_SUCCESS times, from the instance."""
    from dagster import DagsterEventType, DagsterInstance

    starts: dict[tuple[str, str], float] = {}
    total, count = 0.0, 0
    with DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or event.step_key is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START:
                    starts[(run.run_id, event.step_key)] = entry.timestamp
                elif event.event_type == DagsterEventType.STEP_SUCCESS:
                    total += entry.timestamp - starts[(run.run_id, event.step_key)]
                    count += 1
    return count, total


def _start_workers(env: dict[str, str], preload: bool, logs: Path) -> list[subprocess.Popen]:
    extra = ["-i", "align_assets.definitions"] if preload else []
    workers = []
    for name in ("cpu-1", "cpu-2"):
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the worker
        workers.append(
            subprocess.Popen(
                [str(BIN / WORKER[0]), *WORKER[1:], "-q", "dagster", "-n", name, *extra],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 300
    while not all(" ready." in (logs / f"{n}.log").read_text(errors="replace") for n in ("cpu-1", "cpu-2")):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError("celery workers did not start: see " + str(logs))
        time.sleep(0.5)
    return workers


def _stop(processes: list[subprocess.Popen]) -> None:
    import signal

    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def run_mode(mode: str, inputs: Path, root: Path, video_ids: list[str], redis_url: str | None) -> dict[str, float]:
    """One backfill of the cheap assets on ``mode``: wall seconds, steps, step compute seconds."""
    data_dir, home = root / mode / "data", root / mode / "home"
    shutil.copytree(inputs, data_dir)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    executor = "celery" if mode.startswith("celery") else mode
    extra = {"ALIGN_CELERY_BROKER": f"{redis_url}/0", "ALIGN_CELERY_BACKEND": f"{redis_url}/1"} if redis_url else {}
    env = _env(data_dir, home, executor, extra)
    from dagster import DagsterInstance

    DagsterInstance.from_config(str(home)).dispose()  # the SQLite schema, before the workers race to create it
    workers = _start_workers(env, mode == "celery_preloaded", root / mode) if executor == "celery" else []
    try:
        argv = [sys.executable, "deploy/scale_out.py", "backfill", *video_ids]
        wall = _timed([*argv, *[arg for name in CHEAP_ASSETS for arg in ("--asset", name)]], env)
    finally:
        _stop(workers)
    steps, compute = _step_seconds(home)
    return {"wall": wall, "steps": steps, "compute": compute}


def _import_seconds(env: dict[str, str]) -> tuple[float, float]:
    """A cold ``import align_assets.definitions`` and then one load of deploy/scale_out.py's code location."""
    code = (
        "import time; t = time.perf_counter(); import align_assets.definitions; t1 = time.perf_counter();"
        "from dagster._core.definitions.reconstruct import ReconstructableRepository as R;"
        "R.for_file('deploy/scale_out.py', 'defs', working_directory='.').get_definition();"
        "print(t1 - t, time.perf_counter() - t1)"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    imports, location = done.stdout.split()[-2:]
    return float(imports), float(location)


def _start_redis(root: Path) -> tuple[subprocess.Popen | None, str | None]:
    import socket

    binary = shutil.which("redis-server")
    if binary is None:
        return None, None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(1)
    return process, f"redis://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--keywords", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "keywords.csv")
    args = parser.parse_args(argv)
    from align_core.io.layout import DataLayout
    from align_demo.corpus import generate_demo_corpus

    root = Path(tempfile.mkdtemp(prefix="align-bench-scale-out-"))
    redis, redis_url = _start_redis(root)
    try:
        inputs = root / "inputs"
        corpus = generate_demo_corpus(
            DataLayout(inputs).ensure(),
            n_videos=args.videos,
            seed=11,
            keywords_source=args.keywords if args.keywords.exists() else None,
            width=144,
            height=256,
            n_empty_keywords=0,
            n_cta_keywords=0,
            videos_without_scene_rows=0,
            duration_range_s=(4.0, 4.0),
        )
        imports, location = _import_seconds(_env(inputs, root, "in_process"))
        print(
            f"cold import align_assets.definitions: {imports:.1f} s; load deploy/scale_out.py after it: {location:.1f} s"
        )
        print(f"{'executor':<20}{'wall s':>9}{'steps':>7}{'compute s':>11}{'other s/step':>14}")
        for mode in args.modes.split(","):
            if mode.startswith("celery") and redis_url is None:
                print(f"{mode:<20} skipped: redis-server not installed")
                continue
            result = run_mode(mode, inputs, root, list(corpus.video_ids), redis_url)
            other = (result["wall"] - result["compute"]) / max(result["steps"], 1)
            print(f"{mode:<20}{result['wall']:>9.1f}{result['steps']:>7.0f}{result['compute']:>11.1f}{other:>14.2f}")
            sys.stdout.flush()
        print(json.dumps({"videos": args.videos, "assets": CHEAP_ASSETS}))
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
