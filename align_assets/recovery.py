"""Reclaim what a killed run left behind: its pool slots, its run status and its temporary files.

Dagster frees a step's concurrency slot when the step ends, and its daemon frees the slots of
runs that ended (``run_monitoring.free_slots_after_run_end_seconds``). A run whose process was
SIGKILLed never ends: it stays ``STARTED`` and keeps its ``gpu`` slot, so every later run waits
on it forever, and marking it cancelled does not free the slot. The command-line runners have
no daemon, so before launching anything they do here what the daemon's run monitoring and
concurrency reclamation would do, with Dagster's own calls:

- a run launched by these runners (tagged with host, pid and process start) whose process is
  gone is reported failed (``report_run_failed``) and its slots freed
  (``free_concurrency_slots_for_run``);
- a run that already ended (failed, cancelled in the UI, succeeded) and still holds slots has
  them freed;
- temporary files of dead writers (``.<name>.tmp-<pid>-*``) are removed and interrupted
  directory swaps rolled back (:func:`align_core.io.atomic.reclaim_temporaries`).

Runs of other hosts, and runs whose process is alive, are never touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from align_core.io.atomic import process_alive, reclaim_temporaries
from align_core.io.layout import DataLayout

__all__ = [
    "PID_TAG",
    "blocked_steps",
    "free_slots",
    "process_tags",
    "reclaim",
    "reclaim_dead_runs",
]

HOST_TAG = "align/host"
PID_TAG = "align/pid"
PROCESS_START_TAG = "align/process_start"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_tags() -> dict[str, str]:
    """Run tags that let a later process tell whether this one is still alive."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = _process_start(os.getpid())
    if start is not None:
        tags[PROCESS_START_TAG] = start
    return tags


def launcher_alive(tags: dict[str, str]) -> bool | None:
    """True/False for a run launched by these runners on this host; None when that cannot be told."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return None
    pid = int(tags[PID_TAG])
    if not process_alive(pid):
        return False
    recorded = tags.get(PROCESS_START_TAG)
    return recorded is None or _process_start(pid) in (None, recorded)


def _run_process_alive(instance, run) -> tuple[bool | None, str]:
    """Whether the process executing ``run`` is alive (None: cannot tell), and where it ran.

    Runs these runners launched carry host/pid/start tags. Any other run on a local (SQLite)
    instance is judged by the pid Dagster's executor logged ("Executing steps in process (pid: N)").
    """
    from dagster import DagsterEventType
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    if PID_TAG in run.tags:
        return launcher_alive(run.tags), f"pid {run.tags[PID_TAG]} on {run.tags.get(HOST_TAG)}"
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return None, "unknown"
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        pid = getattr(metadata.get("pid"), "value", None)
        if pid is not None and str(pid).isdigit():
            return process_alive(int(pid)), f"pid {pid}"
    return None, "unknown"


@dataclass
class Reclaimed:
    failed_runs: list[str] = field(default_factory=list)  # runs whose process had died
    freed_slots: dict[str, int] = field(default_factory=dict)  # run id -> slots freed
    temporaries: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"run {run_id} had died (its process is gone): marked failed" for run_id in self.failed_runs]
        out += [f"freed {count} pool slot(s) held by run {run_id}" for run_id, count in self.freed_slots.items()]
        out += [f"removed {path} left by a killed process" for path in self.temporaries]
        return out


def reclaim_dead_runs(instance, reason: str = "") -> Reclaimed:
    """Mark runs whose launching process died failed, and free slots held by runs that ended."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.storage.dagster_run import FINISHED_STATUSES

    reclaimed = Reclaimed()
    running = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(filters=RunsFilter(statuses=running)):
        alive, where = _run_process_alive(instance, run)
        if alive is False:
            instance.report_run_failed(
                run, message=f"the process that ran this run ({where}) is gone (killed?){reason}"
            )
            reclaimed.failed_runs.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        held: dict[str, int] = {}
        for pool in storage.get_concurrency_keys():
            info = storage.get_concurrency_info(pool)
            for run_id in {slot.run_id for slot in info.claimed_slots} | {step.run_id for step in info.pending_steps}:
                held[run_id] = held.get(run_id, 0) + sum(slot.run_id == run_id for slot in info.claimed_slots)
        for run_id in sorted(held):
            run = instance.get_run_by_id(run_id)
            if run is None or run.status in FINISHED_STATUSES:
                storage.free_concurrency_slots_for_run(run_id)
                if held[run_id]:
                    reclaimed.freed_slots[run_id] = held[run_id]
    return reclaimed


def reclaim(instance, layout: DataLayout) -> Reclaimed:
    """Everything a killed run left: dead runs, their slots, and temporary files in the data directory."""
    reclaimed = reclaim_dead_runs(instance)
    roots = [(layout.root, 1), (layout.raw_dir, 2), (layout.artifacts_dir, 3), (layout.reports_dir, 1)]
    for directory, depth in roots:
        reclaimed.temporaries.extend(reclaim_temporaries(directory, depth))
    return reclaimed


@dataclass(frozen=True)
class BlockedStep:
    run_id: str
    step_key: str
    pool: str
    limit: int
    holders: list[str]  # "run <id> (<step>, <status>, <where>)"

    def message(self) -> str:
        held = "; ".join(self.holders) if self.holders else "no run (a slot frees any moment)"
        return f"{self.step_key} (run {self.run_id[:8]}) is waiting for a slot in pool '{self.pool}' (limit {self.limit}), held by {held}"


def blocked_steps(instance, run_ids: set[str] | None = None) -> list[BlockedStep]:
    """Steps of ``run_ids`` (all runs when None) waiting on a pool slot, and who holds the slots."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    out = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        claimed = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
        for pending in info.pending_steps:
            if (pending.run_id, pending.step_key) in claimed or pending.assigned_timestamp is not None:
                continue
            if run_ids is not None and pending.run_id not in run_ids:
                continue
            holders = []
            for run_id, step_key in sorted(claimed):
                run = instance.get_run_by_id(run_id)
                status = run.status.value if run else "unknown run"
                where = (
                    f"pid {run.tags[PID_TAG]} on {run.tags[HOST_TAG]}"
                    if run and PID_TAG in run.tags
                    else "launched elsewhere"
                )
                holders.append(f"run {run_id[:8]} ({step_key}, {status}, {where})")
            out.append(BlockedStep(pending.run_id, pending.step_key, pool, int(info.slot_count), holders))
    return out


def free_slots(instance, pool: str) -> int | None:
    """Free slots in ``pool`` now (None when the pool has no limit)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    if pool not in storage.get_concurrency_keys():
        return None  # never used: the first claim sets it up with a free slot
    info = storage.get_concurrency_info(pool)
    return max(0, int(info.slot_count) - len(info.claimed_slots))
