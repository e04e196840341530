"""Automation at corpus scale: per-video stages follow materialization events, not a partition scan.

Declarative automation (``AutomationCondition.eager()`` evaluated by an automation sensor)
evaluates every condition over every partition on each tick. With the real keyword file's
107,205 videos registered as partitions, one tick took 237 s (18 s at 10,000): the daemon
would spend its whole life evaluating. So per-video assets are carried downstream by
:func:`per_video_automation`, a sensor with a cursor (the last event storage id it handled per
asset): each tick reads only the materializations recorded since, and for each new
``(asset, video)`` asks for the per-video children whose partitioned parents all exist for
that video and are newer than the child's own materialization (the eager rule: "a parent was
updated, and none is missing"). Its cost follows the number of new events, not the corpus; a
backlog (first start on a large instance) is worked off :data:`EVENTS_PER_TICK` events per asset
per tick. Warehouse tables fed by a per-video asset are requested once per tick in which that
asset had new events (one rebuild, incremental past 2,000 videos: see
:func:`align_core.io.warehouse.rebuild_table_from_parquet`).

The rule is one named condition, :data:`PER_VIDEO_CONDITION` (eager), owned by the sensor that
evaluates it: the per-video assets and the tables they feed declare no automation condition of
their own, since the ``automation`` sensor would evaluate such a condition over every partition.
That sensor keeps evaluating the unpartitioned assets' own conditions (the checkpoint, the A/B
ingest and the report), which is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    DagsterEventType,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from align_assets.partitions import video_partitions

__all__ = [
    "PER_VIDEO_CONDITION",
    "SENSOR_NAME",
    "carried_keys",
    "evaluate_per_video_automation",
    "per_video_automation",
]

#: Most materialization events read per asset per tick (a backlog is worked off over ticks).
EVENTS_PER_TICK = 2_000
SENSOR_NAME = "per_video_automation"
#: The condition :func:`per_video_automation` applies to every per-video asset and to the warehouse
#: tables they feed (:func:`carried_keys`), evaluated from the events since its cursor instead of
#: over every partition: eager, "a parent was updated, and none is missing".
PER_VIDEO_CONDITION = AutomationCondition.eager()


def _is_video_partitioned(node) -> bool:
    return node.partitions_def == video_partitions


def per_video_children(asset_graph) -> dict[AssetKey, tuple[list[AssetKey], list[AssetKey]]]:
    """For each per-video asset key: (per-video children, warehouse tables it feeds).

    Other unpartitioned children (the ControlNet checkpoint) are not carried: retraining on
    every new video is a decision, not an automation.
    """
    out: dict[AssetKey, tuple[list[AssetKey], list[AssetKey]]] = {}
    for node in asset_graph.asset_nodes:
        if not node.is_materializable or not _is_video_partitioned(node):
            continue
        partitioned, tables = [], []
        for child_key in sorted(node.child_keys, key=lambda k: k.to_user_string()):
            child = asset_graph.get(child_key)
            if not child.is_materializable:
                continue
            if _is_video_partitioned(child):
                partitioned.append(child_key)
            elif "duckdb" in child.kinds:  # a warehouse table collected from the per-video files
                tables.append(child_key)
        out[node.key] = (partitioned, tables)
    return out


def carried_keys(assets: Iterable[AssetsDefinition]) -> set[AssetKey]:
    """Keys :func:`per_video_automation` requests: per-video assets downstream of another, and the tables they feed.

    The first stage (``video_catalog``) is requested by the ``new_video_sensor`` instead.
    """
    specs = [spec for a in assets for spec in a.specs]
    per_video = {spec.key for spec in specs if spec.partitions_def == video_partitions}
    children = {
        spec.key for spec in specs if spec.key in per_video and any(dep.asset_key in per_video for dep in spec.deps)
    }
    tables = {
        spec.key
        for spec in specs
        if spec.partitions_def is None
        and "duckdb" in spec.kinds
        and any(dep.asset_key in per_video for dep in spec.deps)
    }
    return children | tables


def _latest_storage_id(instance, key: AssetKey, partition: str | None) -> int | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None), limit=1
    ).records
    return records[0].storage_id if records else None


def evaluate_per_video_automation(
    instance, asset_graph, cursor: str | None, events_per_tick: int = EVENTS_PER_TICK
) -> tuple[list[RunRequest], str, dict[str, int]]:
    """One tick: (run requests, new cursor, counts). Pure function of the instance and the cursor."""
    state: dict[str, int] = json.loads(cursor) if cursor else {}
    children = per_video_children(asset_graph)
    requests: dict[tuple[AssetKey, str], int] = {}  # (child, video) -> newest triggering storage id
    tables: dict[AssetKey, int] = {}
    events = 0
    unpartitioned_seen: dict[AssetKey, bool] = {}

    def unpartitioned_exists(key: AssetKey) -> bool:
        if key not in unpartitioned_seen:
            unpartitioned_seen[key] = _latest_storage_id(instance, key, None) is not None
        return unpartitioned_seen[key]

    for key, (video_children, table_children) in children.items():
        name = key.to_user_string()
        after = state.get(name, 0)
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=events_per_tick, ascending=True
        ).records
        if not records:
            continue
        events += len(records)
        state[name] = max(r.storage_id for r in records)
        for table in table_children:
            tables[table] = max(tables.get(table, 0), state[name])
        for record in records:
            video = record.partition_key
            if video is None:
                continue
            for child in video_children:
                current = requests.get((child, video))
                requests[(child, video)] = max(current or 0, record.storage_id)

    # One query per asset for every video of this tick (not one per video): the newest
    # materialization of each candidate child and of each of its per-video parents.
    videos = {video for _, video in requests}
    latest: dict[AssetKey, dict[str, int]] = {}

    def newest(key: AssetKey) -> dict[str, int]:
        if key not in latest:
            latest[key] = dict(
                instance.get_latest_storage_id_by_partition(
                    key, DagsterEventType.ASSET_MATERIALIZATION, partitions=videos
                )
            )
        return latest[key]

    run_requests: list[RunRequest] = []
    for (child, video), trigger in sorted(requests.items(), key=lambda item: (item[1], item[0][0].to_user_string())):
        node = asset_graph.get(child)
        own = newest(child).get(video)
        if own is not None and own > trigger:
            continue  # already rebuilt after this update (e.g. in the same run)
        ready = True
        for parent in node.parent_keys:
            parent_node = asset_graph.get(parent)
            if _is_video_partitioned(parent_node):
                if video not in newest(parent):
                    ready = False
                    break
            elif parent_node.is_materializable and not unpartitioned_exists(parent):
                ready = False
                break
        if ready:
            run_requests.append(
                RunRequest(
                    asset_selection=[child], partition_key=video, run_key=f"{child.to_user_string()}:{video}:{trigger}"
                )
            )
    if tables:
        newest = max(tables.values())
        run_requests.append(
            RunRequest(asset_selection=sorted(tables, key=lambda k: k.to_user_string()), run_key=f"tables:{newest}")
        )
    return run_requests, json.dumps(state, sort_keys=True), {"events": events, "requested": len(run_requests)}


@sensor(
    name=SENSOR_NAME,
    target=AssetSelection.all(),
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Carries each new or updated video downstream (PER_VIDEO_CONDITION: eager), reading only the events "
    "since its cursor.",
)
def per_video_automation(context: SensorEvaluationContext):
    requests, cursor, counts = evaluate_per_video_automation(
        context.instance, context.repository_def.asset_graph, context.cursor
    )
    if not requests:
        return SensorResult(
            skip_reason=SkipReason(f"no per-video stage to run ({counts['events']} new events)"), cursor=cursor
        )
    return SensorResult(run_requests=requests, cursor=cursor)
