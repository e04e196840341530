"""Dagster: in-process materialization of the catalog assets, checks, tables and the sensor."""

import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from align_assets.assets.catalog import scenes, video_catalog, videos
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_assets.resources import default_resources
from align_assets.runner import failure_messages
from align_assets.sensors import new_video_sensor
from align_core.inputs.research_csvs import ALIGNMENT_COLUMNS
from align_core.io.layout import DataLayout

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path, shared_data: Path) -> DataLayout:
    layout = DataLayout(tmp_path / "data").ensure()
    shutil.copyfile(shared_data / "videos" / "help.mkv", layout.videos_dir / "real-help.mkv")
    shutil.copyfile(
        shared_data / "videos" / "fruit-and-vegetable-detection.mp4", layout.videos_dir / "7228023352396972034.mp4"
    )
    layout.keywords_csv.write_text("_id,keyword_list[0]\n7228023352396972034,fresh fruit\nreal-help,shop now\n")
    header = ",".join(ALIGNMENT_COLUMNS)
    layout.alignment_csv.write_text(
        f"{header}\n"
        "7228023352396972034,1,0.30,0.0,3.0,0.012,0.03,12,1,0.6,0.4,120.5,Food & Beverage\n"
        "7228023352396972034,2,0.45,3.0,6.06,0.015,0.02,14,1,0.5,0.3,110.0,Food & Beverage\n"
    )
    return layout


def run_catalog(layout: DataLayout, instance: DagsterInstance, key: str):
    return materialize(
        [video_catalog, videos, scenes],
        selection=[video_catalog],
        partition_key=key,
        instance=instance,
        resources=default_resources(data_dir=layout.root),
        raise_on_error=False,
    )


def test_catalog_materializes_and_tables_collect(data_dir: DataLayout) -> None:
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["7228023352396972034", "real-help"])
        for key in ("7228023352396972034", "real-help"):
            result = run_catalog(data_dir, instance, key)
            assert result.success
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert checks == {"scene_schema": True, "value_ranges": True, "scene_frame_consistency": True}
        materialization = result.asset_materializations_for_node("video_catalog")[0]
        assert materialization.metadata["frame_count"].value == 58
        assert "call_to_action" in materialization.metadata["keyword_verdict"].value
        assert "data:image/png;base64," in materialization.metadata["thumbnail"].value
        for _ in range(2):  # collecting twice is idempotent
            tables = materialize(
                [video_catalog, videos, scenes],
                selection=[videos, scenes],
                instance=instance,
                resources=default_resources(data_dir=data_dir.root),
            )
            assert tables.success
    con = duckdb.connect(str(data_dir.warehouse_path), read_only=True)
    rows = con.execute("SELECT video_id, industry, scene_source, n_scenes FROM videos ORDER BY video_id").fetchall()
    assert rows == [("7228023352396972034", "Food & Beverage", "given", 2), ("real-help", None, "detected", 1)]
    assert con.execute("SELECT count(*) FROM scenes").fetchone()[0] == 3
    ranges = con.execute(
        "SELECT start_frame, end_frame FROM scenes WHERE video_id = '7228023352396972034' ORDER BY scene_number"
    ).fetchall()
    assert ranges == [(0, 50), (50, 101)]  # 3.0 s at 16.667 fps


def test_bad_video_fails_alone(data_dir: DataLayout) -> None:
    (data_dir.videos_dir / "broken-upload.mp4").write_bytes(b"")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["broken-upload", "real-help"])
        bad = run_catalog(data_dir, instance, "broken-upload")
        assert not bad.success
        (message,) = failure_messages(bad)
        assert "broken-upload.mp4" in message and "empty (0 bytes)" in message
        assert run_catalog(data_dir, instance, "real-help").success


def test_bad_csv_row_fails_only_its_video(data_dir: DataLayout) -> None:
    with data_dir.alignment_csv.open("a") as handle:
        handle.write("real-help,1,1.7,0.0,1.0,0.01,0.02,1,1,0.5,0.4,120,Beauty\n")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["7228023352396972034", "real-help"])
        bad = run_catalog(data_dir, instance, "real-help")
        assert not bad.success
        (message,) = failure_messages(bad)
        assert "line 4" in message and "attention_proportion" in message
        assert run_catalog(data_dir, instance, "7228023352396972034").success


def test_overlapping_scenes_fail_with_lines(data_dir: DataLayout) -> None:
    text = data_dir.alignment_csv.read_text().replace(",2,0.45,3.0,", ",2,0.45,2.0,")
    data_dir.alignment_csv.write_text(text)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["7228023352396972034"])
        result = run_catalog(data_dir, instance, "7228023352396972034")
        (message,) = failure_messages(result)
        assert "overlap by 1.000 s" in message and "lines 2, 3" in message


def test_sensor_registers_new_videos_and_ignores_other_files(data_dir: DataLayout) -> None:
    (data_dir.videos_dir / "notes.txt").write_text("not a video")
    (data_dir.videos_dir / "bad id.mp4").write_bytes(b"x")
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources=default_resources(data_dir=data_dir.root))
        result = new_video_sensor(context)
        added = result.dynamic_partitions_requests[0].partition_keys
        assert sorted(added) == ["7228023352396972034", "real-help"]
        assert sorted(r.partition_key for r in result.run_requests) == sorted(added)
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, list(added))
        again = new_video_sensor(
            build_sensor_context(instance=instance, resources=default_resources(data_dir=data_dir.root))
        )
        assert "no new videos" in again.skip_message


def test_definitions_load(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from align_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {"video_catalog", "videos", "scenes"} <= {k.to_user_string() for k in graph.materializable_asset_keys}
    repo = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ALIGN_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed validation" in done.stdout + done.stderr


def test_a_catalogued_video_is_carried_downstream_by_automation(data_dir: DataLayout) -> None:
    """The per-video automation sensor requests the next stages for a new partition once its catalog exists."""
    from dagster import AssetKey

    from align_assets.automation import evaluate_per_video_automation
    from align_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["real-help"])
        first, cursor, _ = evaluate_per_video_automation(instance, graph, None)
        assert first == []  # catalog still missing
        assert run_catalog(data_dir, instance, "real-help").success
        second, _, _ = evaluate_per_video_automation(instance, graph, cursor)
        requested = {(key, request.partition_key) for request in second for key in request.asset_selection}
        for stage in ("attention_maps", "keyword_masks"):
            assert (AssetKey(stage), "real-help") in requested
        assert not any(key == AssetKey("controlnet_checkpoint") for key, _ in requested)  # training is deliberate


def test_align_import_registers_a_folder(tmp_path: Path, shared_data: Path, monkeypatch, capsys) -> None:
    from align_assets.register import main

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    shutil.copyfile(shared_data / "videos" / "help.mkv", uploads / "Help Clip (final).mkv")
    (uploads / "notes.txt").write_text("not a video")
    layout = DataLayout(tmp_path / "data")
    monkeypatch.setenv("DAGSTER_HOME", str(layout.dagster_home))
    assert main([str(uploads), "--data-dir", str(layout.root)]) == 0
    assert main([str(uploads), "--data-dir", str(layout.root)]) == 0  # idempotent
    assert "unchanged" in capsys.readouterr().out
    with DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME) == ["Help-Clip-final"]
    assert (layout.videos_dir / "Help-Clip-final.mkv").read_bytes() == (uploads / "Help Clip (final).mkv").read_bytes()


def test_cheap_stages_run_several_videos_per_run_with_their_own_metadata(data_dir: DataLayout) -> None:
    """attention_maps and keyword_masks take multi-partition backfill runs; metadata stays per video."""
    from dagster import AssetKey
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from align_assets.assets.attention import attention_maps
    from align_assets.assets.masks import keyword_masks

    keys = ["7228023352396972034", "real-help"]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, keys)
        for key in keys:
            assert run_catalog(data_dir, instance, key).success
        result = materialize(
            [video_catalog, attention_maps, keyword_masks],
            selection=[attention_maps, keyword_masks],
            instance=instance,
            resources=default_resources(data_dir=data_dir.root),
            tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[1]},
        )
        assert result.success
        assert len({run.run_id for run in instance.get_runs()}) == 3  # two catalog runs + one for both videos
        frames = {}
        for record in instance.fetch_materializations(AssetKey("attention_maps"), limit=10).records:
            frames[record.asset_materialization.partition] = record.asset_materialization.metadata["frames"].value
        assert frames == {"7228023352396972034": 101, "real-help": 58}
        reasons = {
            r.asset_materialization.partition: r.asset_materialization.metadata["skipped_reason"].value
            for r in instance.fetch_materializations(AssetKey("keyword_masks"), limit=10).records
        }
        assert "call_to_action" in reasons["real-help"] and "provided mask" in reasons["7228023352396972034"]
