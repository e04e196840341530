"""Run the whole asset graph in process: the instance the demo and the UI share, and dependency waves.

Used by the demo CLI, ``align-backfill`` and ``align-import`` (and the tests); it knows nothing
about the demo corpus. Runs go into a persistent Dagster instance under ``<data>/dagster_home``
so that the UI shows every run, materialization and check afterwards. The graph is executed in
waves: all partitioned assets whose upstream is done (one run per video, so a bad video fails
alone), then the unpartitioned assets that became ready (the checkpoint, warehouse tables,
the report), and so on until nothing is left. Killed runs are reclaimed (``align_assets.recovery``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align_core.io.layout import DataLayout

__all__ = [
    "CHECKPOINT_STEP",
    "VideoWorkers",
    "failure_messages",
    "largest_first",
    "materialize_everything",
    "prepare_instance",
    "quiet_dagster_warnings",
    "report_inputs",
    "run_command",
    "split_unread_checkpoint",
]

INSTANCE_YAML = """\
# Written by `make demo`. Telemetry off; runs launch in-process or as local subprocesses.
telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
concurrency:
  pools:
    default_limit: 1
# Under `dagster dev` the daemon notices run workers that died and frees the pool slots of
# runs that ended; the command-line runners do the same before they launch (align_assets.recovery).
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
"""


def prepare_instance(dagster_home: Path) -> None:
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)


#: Keep the demo's console readable: Dagster's per-event DEBUG lines go to the instance (UI) only.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _is_partitioned(graph, key) -> bool:
    return graph.get(key).partitions_def is not None


def materialize_everything(
    partition_keys: list[str],
    *,
    instance=None,
    resources: dict | None = None,
    op_config: dict[str, dict] | None = None,
    log=print,
    watch: bool = False,
    assets: list[str] | None = None,
    workers: int = 1,
) -> dict[str, list[str]]:
    """Materialize every asset of ``defs`` over ``partition_keys`` in dependency waves.

    ``workers`` > 1 runs a per-video wave's videos in that many worker processes at once (one
    Dagster run per video, as before; pools such as ``gpu`` still admit one step at a time
    across them). It needs the definitions' own resources (``resources`` None).

    ``op_config`` maps an asset name to its config (e.g. fewer training steps in tests); each
    wave's run gets the entries of the assets it runs. ``assets`` limits the graph to those
    asset names (their upstream must exist already). With ``watch`` (the command-line runners)
    each run executes on a worker thread while this thread waits for pool slots, prints steps
    that are blocked on a pool, and stays interruptible by Ctrl-C (Dagster's in-process executor
    swallows SIGINT while a step waits for a slot).
    """
    from dagster import DagsterInstance

    from align_assets.definitions import build_definitions, defs

    if resources is not None:  # the graph follows the data directory it is given (the demo's has its export)
        defs = build_definitions(resources)
    instance = instance or DagsterInstance.get()
    _register_partitions(instance, partition_keys)
    graph = defs.resolve_asset_graph()
    remaining = _selected_keys(graph, assets)
    parallel = workers > 1 and len(partition_keys) > 1 and resources is None
    waves = _Waves(instance, graph, resources or dict(defs.resources), op_config or {}, log, watch)
    waves.definitions = [*(defs.assets or []), *(defs.asset_checks or [])]
    pool = VideoWorkers(min(workers, len(partition_keys))) if parallel else None
    try:
        while remaining:
            remaining -= waves.run_next(remaining, partition_keys, pool)
    except BaseException:
        if pool:
            pool.terminate()  # Ctrl-C, SIGTERM or an error here: the workers' runs are reclaimed as killed
            pool = None
        raise
    finally:
        if pool:
            pool.close()
    return waves.failures


def _register_partitions(instance, partition_keys: list[str]) -> None:
    """Add the videos the instance does not know yet as partitions."""
    from align_assets.partitions import VIDEO_PARTITIONS_NAME

    known = set(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    new = [key for key in partition_keys if key not in known]
    if new:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, new)


def _selected_keys(graph, assets: list[str] | None) -> set:
    """The materializable keys to run: all of them, or those named in ``assets`` (unknown names are an error)."""
    remaining = set(graph.materializable_asset_keys)
    if assets is None:
        return remaining
    unknown = sorted(set(assets) - {key.to_user_string() for key in remaining})
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}")
    return {key for key in remaining if key.to_user_string() in assets}


def _status_line(label: str, ok: bool, seconds: float) -> str:
    return f"   {label:<40} {'ok' if ok else 'FAILED':>6}  {seconds:6.1f} s"


class _Waves:
    """Runs one wave at a time (all per-video assets that are ready, else the unpartitioned ones) and keeps the failures."""

    def __init__(self, instance, graph, resources: dict, op_config: dict[str, dict], log, watch: bool):
        from align_assets.recovery import process_tags

        self.instance, self.graph, self.resources = instance, graph, resources
        self.op_config, self.log, self.watch = op_config, log, watch
        self.tags = {"align/launched_by": "make demo", **process_tags()}
        self.failures: dict[str, list[str]] = {}
        #: what each wave's run materializes from (materialize_everything sets the graph's own definitions)
        self.definitions: list = []

    def run_next(self, remaining: set, partition_keys: list[str], pool: VideoWorkers | None) -> set:
        """Run the next wave and return its keys.

        Each wave takes every asset of one kind (per-video or unpartitioned) whose unfinished
        ancestors are all in the wave; per-video waves run once per video.
        """
        wave = _closure(self.graph, remaining, partitioned=True)
        if wave:
            self._per_video(wave, partition_keys, pool)
            return wave
        wave = _closure(self.graph, remaining, partitioned=False)
        if not wave:
            raise RuntimeError(f"cannot order assets {sorted(k.to_user_string() for k in remaining)}")
        self._unpartitioned(wave)
        return wave

    def _per_video(self, wave: set, partition_keys: list[str], pool: VideoWorkers | None) -> None:
        names = sorted(k.to_user_string() for k in wave)
        self.log(
            f"== per-video assets {', '.join(names)} over {len(partition_keys)} videos"
            + (f" ({pool.size} at a time)" if pool else "")
        )
        if pool:
            for key, ok, message, seconds in pool.run(names, partition_keys, self._run_config(wave)):
                if key in pool.lost:
                    self._reclaim_killed_worker_run(key)
                self.log(_status_line(key, ok, seconds))
                if not ok:
                    self.failures.setdefault(key, []).append(message)
            return
        for key in partition_keys:
            started = time.perf_counter()
            result = self._launch(wave, partition_key=key)
            self.log(_status_line(key, result.success, time.perf_counter() - started))
            if not result.success:
                self.failures.setdefault(key, []).append(_failure_message(result))

    def _reclaim_killed_worker_run(self, key: str) -> None:
        """Mark the run of a video whose worker died failed (it would stay STARTED) and free its slots."""
        from align_assets.recovery import reclaim_dead_runs

        for line in reclaim_dead_runs(self.instance, f" (video {key}: its worker process was killed)").lines():
            self.log(f"   reclaimed: {line}")

    def _unpartitioned(self, wave: set) -> None:
        self.log(f"== assets {', '.join(sorted(k.to_user_string() for k in wave))}")
        started = time.perf_counter()
        result = self._launch(wave)
        self.log(_status_line("(unpartitioned)", result.success, time.perf_counter() - started))
        if not result.success:
            failed, unread = split_unread_checkpoint(failure_messages(result), self.resources)
            for message in unread:
                self.log(
                    f"   note: {message} (the chosen editor does not read the checkpoint: not a failure of this run)"
                )
            if failed:
                self.failures.setdefault("(unpartitioned)", []).extend(failed)

    def _run_config(self, wave: set) -> dict:
        names = {key.to_user_string() for key in wave}
        ops = {name: {"config": config} for name, config in self.op_config.items() if name in names}
        return {**QUIET_RUN_CONFIG, "ops": ops} if ops else QUIET_RUN_CONFIG

    def _launch(self, wave: set, **kwargs):
        from dagster import materialize

        definitions = self.definitions
        kwargs.update(
            selection=list(wave),
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
            tags=self.tags,
            run_config=self._run_config(wave),
        )
        if not self.watch:
            return materialize(definitions, **kwargs)
        pools = set().union(*(self.graph.get(key).pools or set() for key in wave))
        return run_watched(self.instance, lambda: materialize(definitions, **kwargs), pools, self.log)


#: The step whose failure only matters to an editor that reads the trained ControlNet.
CHECKPOINT_STEP = "controlnet_checkpoint"


def _worker_start() -> None:
    """A video worker: one thread per library (the workers themselves share the cores), Ctrl-C left to the parent."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(1)
    quiet_dagster_warnings()


def _worker_materialize(names: list[str], key: str, run_config: dict) -> tuple[str, bool, str, float]:
    """One video's run of ``names`` in a worker process (its own process tags, so a killed worker's run is reclaimable)."""
    from dagster import AssetKey, DagsterInstance, materialize

    from align_assets.definitions import all_asset_checks, all_assets, defs
    from align_assets.recovery import process_tags

    started = time.perf_counter()
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=[AssetKey.from_user_string(n) for n in names],
        instance=DagsterInstance.get(),
        resources=dict(defs.resources),
        raise_on_error=False,
        partition_key=key,
        tags={"align/launched_by": "make demo", **process_tags()},
        run_config=run_config,
    )
    return key, result.success, "" if result.success else _failure_message(result), time.perf_counter() - started


def _worker_main(conn) -> None:
    """A video worker's loop: take ``(names, key, run_config)``, run it, send the result; None or EOF ends it."""
    _worker_start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        names, key, run_config = task
        started = time.perf_counter()
        try:
            result = _worker_materialize(names, key, run_config)
        except Exception as exc:  # noqa: BLE001 - reported as this video's failure; the worker goes on
            result = (key, False, f"worker error: {type(exc).__name__}: {exc}", time.perf_counter() - started)
        conn.send(result)


@dataclass
class _Worker:
    process: Any
    conn: Any
    key: str | None = None
    started: float = 0.0


class VideoWorkers:
    """Worker processes (spawned, so each imports the definitions once) that run one video's wave each.

    Each worker has its own pipe, so a worker that dies (killed, out of memory) fails only the
    video it was running: the others finish in their own workers, and a new worker takes its
    place for the videos still queued. (A ``ProcessPoolExecutor`` breaks as a whole when one
    worker dies: every video was reported failed and the live workers were terminated.)
    """

    def __init__(self, size: int):
        import multiprocessing

        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        #: Videos whose worker died while running them (their runs need marking failed).
        self.lost: set[str] = set()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if w.process.is_alive()]

    def start(self) -> list[int]:
        """Start every worker now (each imports the definitions while the parent goes on); their pids."""
        while len(self._workers) < self.size:
            self._start_worker()
        return self.pids

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child,), name="align-video-worker", daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _assign(self, worker: _Worker, names: list[str], key: str, run_config: dict) -> None:
        worker.key, worker.started = key, time.perf_counter()
        worker.conn.send((names, key, run_config))

    def run(self, names: list[str], keys: list[str], run_config: dict):
        """Yield ``(key, ok, message, seconds)`` as each video's run finishes (in finishing order)."""
        from collections import deque
        from multiprocessing.connection import wait

        queue = deque(keys)
        while queue or any(w.key is not None for w in self._workers):
            for worker in [w for w in self._workers if w.key is None]:
                if queue:
                    self._assign(worker, names, queue.popleft(), run_config)
            while queue and len(self._workers) < self.size:
                self._assign(self._start_worker(), names, queue.popleft(), run_config)
            busy = [w for w in self._workers if w.key is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)  # short: Ctrl-C stays live
            for worker in busy:
                outcome = self._outcome(worker)
                if outcome is not None:
                    worker.key = None
                    yield outcome

    def _outcome(self, worker: _Worker) -> tuple[str, bool, str, float] | None:
        """The worker's result if it sent one; a failure of its own video if it died; None while it works."""
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            return None
        worker.process.join(timeout=5)
        self._workers.remove(worker)
        self.lost.add(str(worker.key))
        code = worker.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        return (
            str(worker.key),
            False,
            f"its worker process (pid {worker.process.pid}) died ({how}) while running this video; "
            "its run is marked failed and the other videos went on",
            time.perf_counter() - worker.started,
        )

    def close(self) -> None:
        """Let every worker finish and exit."""
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
        self._workers.clear()

    def terminate(self) -> None:
        """Stop the workers now (their runs are then marked failed by :func:`reclaim_dead_runs`)."""
        processes = [w.process for w in self._workers]
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=3)
        for process in processes:  # a Dagster step turns SIGTERM into a cancellation and the worker lives on
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        self._workers.clear()


def _our_running_runs(instance) -> set[str]:
    from dagster import DagsterRunStatus, RunsFilter

    from align_assets.recovery import process_tags

    mine = RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED], tags=process_tags())
    return {run.run_id for run in instance.get_runs(filters=mine)}


def _wait_for_pools(instance, pools: set[str], log, poll_s: float = 1.0) -> None:
    """Wait here (interruptibly, saying why) until every pool the next run needs has a free slot."""
    from align_assets.recovery import blocked_steps, free_slots, reclaim_dead_runs

    announced = False
    while True:
        full = [pool for pool in sorted(pools) if free_slots(instance, pool) == 0]
        if not full:
            return
        for line in reclaim_dead_runs(instance).lines():
            log(f"   reclaimed: {line}")
        if not announced and all(free_slots(instance, pool) == 0 for pool in full):
            for pool in full:
                holders = [b for b in blocked_steps(instance) if b.pool == pool]
                info = instance.event_log_storage.get_concurrency_info(pool)
                who = ", ".join(f"run {slot.run_id[:8]} ({slot.step_key})" for slot in info.claimed_slots)
                log(
                    f"   waiting for a slot in pool '{pool}' (limit {info.slot_count}), held by {who}"
                    f"{f'; {len(holders)} step(s) queued' if holders else ''}. Ctrl-C stops."
                )
            announced = True
        time.sleep(poll_s)


def run_watched(instance, run, pools: set[str], log, poll_s: float = 1.0):
    """Call ``run()`` (one Dagster run) on a worker thread; this thread reports blocked steps and takes Ctrl-C.

    Dagster captures SIGINT/SIGTERM only on the main thread; on a worker thread it leaves them to
    this one, so a KeyboardInterrupt reaches :func:`interrupt_runs` in the command's ``main``.
    """
    from align_assets.recovery import blocked_steps

    _wait_for_pools(instance, pools, log, poll_s)
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run()
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="align-run", daemon=True)
    worker.start()
    announced: set[tuple[str, str]] = set()
    while worker.is_alive():
        worker.join(poll_s)
        if not worker.is_alive():
            break
        for blocked in blocked_steps(instance, _our_running_runs(instance)):
            if (blocked.run_id, blocked.step_key) not in announced:
                announced.add((blocked.run_id, blocked.step_key))
                log(f"   waiting: {blocked.message()}. Ctrl-C stops.")
    if "error" in box:
        raise box["error"]
    return box["result"]


def interrupt_runs(instance, why: str) -> list[str]:
    """Mark this process's running runs cancelled and free their pool slots (after Ctrl-C / SIGTERM)."""
    cancelled = []
    for run_id in sorted(_our_running_runs(instance)):
        run = instance.get_run_by_id(run_id)
        instance.report_run_canceled(run, message=why)
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        cancelled.append(run_id)
    return cancelled


def run_command(
    name: str, layout: DataLayout, keys: list[str], *, assets: list[str] | None = None, workers: int = 1
) -> dict[str, list[str]]:
    """What the command-line runners share: reclaim what killed runs left, run the waves, stop cleanly on Ctrl-C.

    Returns the failures by partition; on Ctrl-C or SIGTERM it cancels this process's runs,
    frees their slots and exits with status 130.
    """
    from dagster import DagsterInstance

    from align_assets.recovery import reclaim

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    quiet_dagster_warnings()
    report_inputs(name, layout)
    instance = DagsterInstance.get()
    try:
        for line in reclaim(instance, layout).lines():
            print(f"{name}: reclaimed: {line}", flush=True)
        if workers > 1:
            keys = largest_first(layout, keys)
        failures = materialize_everything(keys, instance=instance, watch=True, assets=assets, workers=workers)
    except KeyboardInterrupt:
        cancelled = interrupt_runs(instance, f"{name} was interrupted (Ctrl-C or SIGTERM)")
        from align_assets.recovery import reclaim_dead_runs

        cancelled += reclaim_dead_runs(instance, f" ({name} was interrupted)").failed_runs  # the video workers' runs
        print(
            f"\n{name}: interrupted; cancelled {len(cancelled)} run(s) and freed their pool slots"
            f"{': ' + ', '.join(cancelled) if cancelled else ''}. Finished outputs are kept; "
            "temporary files are removed on the next start.",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(130)  # the run's worker thread may be inside a C extension: do not wait for it
    finally:
        signal.signal(signal.SIGTERM, previous)
    return failures


#: Above this many videos the order is left as given: probing costs about 10 ms a file.
LARGEST_FIRST_MAX_KEYS = 1000


def largest_first(layout: DataLayout, keys: list[str]) -> list[str]:
    """``keys`` with the most pixels x frames first (the longest-processing-time-first order).

    With several workers the longest videos then start at once and the short ones fill the gaps,
    instead of a long video starting last and running alone. Keys whose file cannot be probed
    keep their order at the end (their runs say what is wrong); past
    :data:`LARGEST_FIRST_MAX_KEYS` videos the given order is kept.
    """
    from align_core.io.video_io import probe_video

    if len(keys) > LARGEST_FIRST_MAX_KEYS:
        return list(keys)

    def work(key: str) -> int:
        try:
            probe = probe_video(layout.video_path(key))
        except Exception:  # noqa: BLE001 - any unreadable input sorts last; its own run reports it
            return -1
        return probe.frame_count * probe.width * probe.height

    sizes = {key: work(key) for key in keys}
    return sorted(keys, key=lambda key: -sizes[key])  # stable: equal sizes keep their order


def _closure(graph, remaining: set, *, partitioned: bool) -> set:
    """Assets of one kind whose remaining ancestors are all of that kind (runnable together now)."""
    selected: set = set()
    changed = True
    while changed:
        changed = False
        for key in remaining - selected:
            if _is_partitioned(graph, key) != partitioned:
                continue
            if set(graph.get(key).parent_keys) & remaining <= selected:
                selected.add(key)
                changed = True
    return selected


def split_unread_checkpoint(messages: list[str], resources: dict) -> tuple[list[str], list[str]]:
    """(failures, notes): a checkpoint that could not be trained fails no run whose editor never reads it."""
    editor, platform = resources.get("editor"), resources.get("platform")
    if editor is None or platform is None or editor.choice(platform).needs_checkpoint:
        return messages, []
    unread = [m for m in messages if m.startswith(f"{CHECKPOINT_STEP}:")]
    return [m for m in messages if m not in unread], unread


def failure_messages(result) -> list[str]:
    """The user-facing error of each failed step (the root cause, not Dagster's wrapper)."""
    messages = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or event.step_failure_data is None:
            continue
        error = event.step_failure_data.error
        # Skip Dagster's own wrappers only: the first user error carries the message that names
        # the file and the reason; its causes are library details (e.g. PyAV's bare error).
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        text = error.message.strip() if error is not None else "unknown error"
        messages.append(f"{event.step_key}: {text}")
    return messages


def _failure_message(result) -> str:
    """The first failed step's whole message: a CSV error's per-row list stays readable on the console."""
    messages = failure_messages(result)
    return messages[0] if messages else "run failed (see the Dagster UI for details)"


def quiet_dagster_warnings() -> None:
    """Hide Dagster warnings a user of the command line cannot act on (beta flags, policy mixing)."""
    import warnings

    warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta")
    warnings.filterwarnings("ignore", message=r"(?s).*materializes assets with varying BackfillPolicies")


def report_inputs(name: str, layout: DataLayout) -> None:
    """Print every input the run will not use, with its reason: CSV rows that belong to no video, odd files."""
    from align_core.inputs.research_csvs import csv_problems, describe_csv_problems
    from align_core.inputs.video_import import video_ids_in_inbox

    ids, skipped = video_ids_in_inbox(layout)
    for message in skipped:
        print(f"{name}: ignored file: {message}", file=sys.stderr)
    problems = csv_problems(layout.keywords_csv, layout.alignment_csv)
    for line in describe_csv_problems(problems, ids):
        print(line if line.startswith("  ") else f"{name}: {line}", file=sys.stderr)
