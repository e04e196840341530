"""Corpus-scale automation: the event-driven per-video sensor and the incremental table rebuild."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, evaluate_automation_conditions

from align_assets.automation import SENSOR_NAME, evaluate_per_video_automation
from align_assets.definitions import defs
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_core.io.warehouse import read_connection, rebuild_table_from_parquet

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


def _materialize(instance: DagsterInstance, asset: str, videos: list[str]) -> None:
    for video in videos:
        instance.report_runless_asset_event(AssetMaterialization(AssetKey(asset), partition=video))


def _requested(requests) -> set[tuple[str, str | None]]:
    return {(key.to_user_string(), request.partition_key) for request in requests for key in request.asset_selection}


def test_per_video_assets_leave_the_partition_scan_to_the_cursor_sensor() -> None:
    graph = defs.resolve_asset_graph()
    per_video = [node for node in graph.asset_nodes if node.partitions_def is not None]
    assert per_video and all(node.automation_condition is None for node in per_video)
    assert defs.get_sensor_def(SENSOR_NAME) is not None
    # The unpartitioned A/B ingest and report keep their own (cheap) conditions.
    assert graph.get(AssetKey("analysis_report")).automation_condition is not None


def test_sensor_carries_a_video_downstream_once_its_parents_exist() -> None:
    graph = defs.resolve_asset_graph()
    with DagsterInstance.ephemeral() as instance:
        videos = ["vid-a", "vid-b"]
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, videos)
        requests, cursor, counts = evaluate_per_video_automation(instance, graph, None)
        assert requests == [] and counts["events"] == 0

        _materialize(instance, "video_catalog", videos)
        requests, cursor, _ = evaluate_per_video_automation(instance, graph, cursor)
        got = _requested(requests)
        assert {("attention_maps", v) for v in videos} | {("keyword_masks", v) for v in videos} <= got
        assert not any(name == "control_tensors" for name, _ in got)  # attention and masks still missing
        assert ("videos", None) in got and ("scenes", None) in got  # the tables, once per tick

        # Same cursor, nothing new: nothing requested again.
        again, cursor, counts = evaluate_per_video_automation(instance, graph, cursor)
        assert again == [] and counts["events"] == 0

        _materialize(instance, "attention_maps", ["vid-a"])
        requests, cursor, _ = evaluate_per_video_automation(instance, graph, cursor)
        assert not any(name == "control_tensors" for name, _ in _requested(requests))  # masks missing
        _materialize(instance, "keyword_masks", ["vid-a"])
        requests, cursor, _ = evaluate_per_video_automation(instance, graph, cursor)
        assert ("control_tensors", "vid-a") in _requested(requests)
        assert ("control_tensors", "vid-b") not in _requested(requests)

        # A child materialized after its parent's update (same run) is not asked for again.
        _materialize(instance, "control_tensors", ["vid-a"])
        _materialize(instance, "variant_plans", ["vid-a"])
        requests, cursor, _ = evaluate_per_video_automation(instance, graph, cursor)
        assert ("variant_plans", "vid-a") not in _requested(requests)


def test_automation_tick_stays_small_with_many_partitions(shared_data: Path) -> None:
    """The real keywords.csv ids (the first 20,000): the automation tick no longer scans them."""
    ids = (
        pd.read_csv(shared_data / "keywords.csv", dtype=str, usecols=["_id"])["_id"]
        .drop_duplicates()
        .head(20_000)
        .tolist()
    )
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ids)
        started = time.perf_counter()
        result = evaluate_automation_conditions(defs=defs, instance=instance)
        elapsed = time.perf_counter() - started
        assert result.total_requested == 0
        # Measured, not a speed assertion: before the change this tick scanned every partition
        # (about 200 s at 10,000 on the shared machine); now it evaluates the unpartitioned assets only.
        print(f"automation tick with {len(ids)} partitions: {elapsed:.2f} s")
        requests, _, counts = evaluate_per_video_automation(instance, defs.resolve_asset_graph(), None)
        assert requests == [] and counts["events"] == 0


def _write_video_file(root: Path, video_id: str, value: float, extra: bool = False) -> Path:
    directory = root / video_id
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"video_id": [video_id] * 3, "frame": [0, 1, 2], "alignment": [value] * 3})
    if extra:
        frame["note"] = "x"
    path = directory / "alignment_frames.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_incremental_rebuild_reads_only_changed_files_and_matches_a_full_one(tmp_path: Path) -> None:
    root = tmp_path / "artifacts" / "control_tensors"
    database = tmp_path / "w.duckdb"
    files = [_write_video_file(root, f"v{i}", float(i)) for i in range(5)]
    first = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=True)
    assert first.rows == 15 and not first.incremental and first.files_read == 5  # no state yet: full
    nothing = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=True)
    assert nothing.incremental and nothing.files_read == 0 and nothing.rows == 15
    time.sleep(0.01)
    _write_video_file(root, "v1", 10.0)  # a re-run partition
    files[3].unlink()  # a removed video
    files = [f for f in files if f.exists()] + [_write_video_file(root, "v9", 9.0)]
    changed = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=True)
    assert changed.incremental and changed.files_read == 2 and changed.rows == 15
    with read_connection(database) as con:
        incremental = con.execute("SELECT * FROM frame_alignment ORDER BY video_id, frame").df()
    full_db = tmp_path / "full.duckdb"
    rebuild_table_from_parquet(full_db, "frame_alignment", files, "video_id, frame", incremental=False)
    with read_connection(full_db) as con:
        full = con.execute("SELECT * FROM frame_alignment ORDER BY video_id, frame").df()
    pd.testing.assert_frame_equal(incremental, full)
    # A new column is a schema change: the rebuild falls back to a full one instead of failing.
    _write_video_file(root, "v2", 2.0, extra=True)
    widened = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=True)
    assert not widened.incremental and widened.rows == 15


def test_empty_file_list_drops_the_table(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    files = [_write_video_file(tmp_path / "a", "v0", 1.0)]
    rebuild_table_from_parquet(database, "t", files, "video_id")
    assert rebuild_table_from_parquet(database, "t", [], "video_id").rows == 0
    with read_connection(database) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'").fetchone()[0] == 0
