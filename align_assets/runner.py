"""Run the whole asset graph in process: the instance the demo and the UI share, and dependency waves.

Used by the demo CLI, ``align-backfill`` and ``align-import`` (and the tests); it knows nothing
about the demo corpus. Runs go into a persistent Dagster instance under ``<data>/dagster_home``
so that the UI shows every run, materialization and check afterwards. The graph is executed in
waves: all partitioned assets whose upstream is done (one run per video, so a bad video fails
alone), then the unpartitioned assets that became ready (the checkpoint, warehouse tables,
the report), and so on until nothing is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
) -> dict[str, list[str]]:
    """Materialize every asset of ``defs`` over ``partition_keys`` in dependency waves.

    ``op_config`` maps an asset name to its config (e.g. fewer training steps in tests); each
    wave's run gets the entries of the assets it runs.
    """
    from dagster import DagsterInstance, materialize

    from align_assets.definitions import all_assets, defs
    from align_assets.partitions import VIDEO_PARTITIONS_NAME

    instance = instance or DagsterInstance.get()
    op_config = op_config or {}
    known = set(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
    new = [key for key in partition_keys if key not in known]
    if new:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, new)

    graph = defs.resolve_asset_graph()
    remaining = set(graph.materializable_asset_keys)
    failures: dict[str, list[str]] = {}
    resources = resources or dict(defs.resources)

    def wave_config(wave: set) -> dict:
        names = {key.to_user_string() for key in wave}
        ops = {name: {"config": config} for name, config in op_config.items() if name in names}
        return {**QUIET_RUN_CONFIG, "ops": ops} if ops else QUIET_RUN_CONFIG

    while remaining:
        # Each wave takes every asset of one kind (per-video or unpartitioned) whose unfinished
        # ancestors are all in the wave; per-video waves run once per video.
        wave = _closure(graph, remaining, partitioned=True)
        if wave:
            names = sorted(k.to_user_string() for k in wave)
            log(f"== per-video assets {', '.join(names)} over {len(partition_keys)} videos")
            for key in partition_keys:
                started = time.perf_counter()
                result = materialize(
                    all_assets, selection=list(wave), partition_key=key, instance=instance,
                    resources=resources, raise_on_error=False, tags={"align/launched_by": "make demo"},
                    run_config=wave_config(wave),
                )
                log(f"   {key:<40} {'ok' if result.success else 'FAILED':>6}  {time.perf_counter() - started:6.1f} s")
                if not result.success:
                    failures.setdefault(key, []).append(_failure_message(result))
        else:
            wave = _closure(graph, remaining, partitioned=False)
            if not wave:
                raise RuntimeError(f"cannot order assets {sorted(k.to_user_string() for k in remaining)}")
            log(f"== assets {', '.join(sorted(k.to_user_string() for k in wave))}")
            started = time.perf_counter()
            result = materialize(
                all_assets, selection=list(wave), instance=instance, resources=resources,
                raise_on_error=False, tags={"align/launched_by": "make demo"}, run_config=wave_config(wave),
            )
            log(f"   {'(unpartitioned)':<40} {'ok' if result.success else 'FAILED':>6}  {time.perf_counter() - started:6.1f} s")
            if not result.success:
                failures.setdefault("(unpartitioned)", []).extend(failure_messages(result))
        remaining -= wave
    return failures


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
    messages = failure_messages(result)
    return messages[0].splitlines()[0] if messages else "run failed (see the Dagster UI for details)"
