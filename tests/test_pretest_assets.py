"""The pretest's Dagster assets and sensor on a real data directory and a real DuckDB warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize
from pretest_sim import SimStudy, write_participants

from align_assets.assets.pretest import (
    human_attention,
    human_manipulation_check,
    pretest_responses,
    pretest_session_sensor,
    pretest_study,
)
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_assets.resources import default_resources
from align_core.io.layout import DataLayout
from align_core.perception.masks import KeywordMasks, save_keyword_masks
from align_core.pretest.collect import session_files
from align_core.pretest.stage import CENTRE_BIAS_SCORER, human_maps_path
from analysis.report import build_report

ASSETS = [pretest_study, pretest_responses, human_attention, human_manipulation_check]


def _layout(tmp_path: Path, participants: int) -> tuple[DataLayout, SimStudy]:
    layout = DataLayout(tmp_path / "data").ensure()
    sim = SimStudy()
    write_participants(layout.root, sim, participants=participants, change=0.3, seed=7)
    masks = sim.masks()
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    for video_id in sim.videos:
        result = KeywordMasks(masks, 0.5, "test-box", "product", coverage, np.ones(len(masks), np.float32))
        save_keyword_masks(layout.artifact("keyword_masks", "masks", video_id), result)
    return layout, sim


def _run(layout: DataLayout, instance: DagsterInstance, selection, partition: str | None = None) -> None:
    result = materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        instance=instance,
        resources=default_resources(data_dir=layout.root),
    )
    assert result.success


def _table(layout: DataLayout, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(layout.warehouse_path), read_only=True) as con:
        return con.execute(sql).df()


# slow: materializes the pretest assets for every video of the simulated study
@pytest.mark.slow
def test_assets_collect_map_and_check_the_planted_boost(tmp_path: Path) -> None:
    layout, sim = _layout(tmp_path, participants=36)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, list(sim.videos))
        _run(layout, instance, [pretest_study, pretest_responses])
        for video_id in sim.videos:
            _run(layout, instance, [human_attention], video_id)
        before = build_report(layout.warehouse_path, tmp_path / "before").html_path.read_text()
        _run(layout, instance, [human_manipulation_check])
    page = build_report(layout.warehouse_path, tmp_path / "after").html_path.read_text()
    assert "<h2>Pretest</h2>" not in before
    assert "<h2>Pretest</h2>" in page and "Human manipulation check per variant and window" in page
    studies = _table(layout, "SELECT * FROM pretest_studies")
    assert studies["study_id"].tolist() == [sim.study_id] and studies["videos"].tolist() == [len(sim.videos)]
    verdicts = _table(layout, "SELECT variant, human_check FROM pretest_human_verdicts ORDER BY variant")
    assert verdicts.set_index("variant")["human_check"].to_dict() == {"early_boost": "passed", "placebo": "passed"}
    check = _table(layout, "SELECT * FROM pretest_human_check WHERE variant = 'placebo'")
    assert (check["verdict"] == "not passed").all()
    card = _table(layout, "SELECT * FROM pretest_scorer_card")
    assert card["scorer"].tolist() == [CENTRE_BIAS_SCORER] and card["videos"].tolist() == [len(sim.videos)]
    plan = _table(layout, "SELECT * FROM pretest_sample_size")
    assert (plan["participants_needed"] % len(sim.variants) == 0).all()
    assert human_maps_path(layout, sim.videos[0], sim.study_id).exists()


def _tick(instance: DagsterInstance, resources: dict, cursor: str | None):
    context = build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    result = pretest_session_sensor(context)
    return result, result.cursor


def test_sensor_collects_changed_sessions_then_maps_the_studys_videos_and_withdrawal_removes_rows(
    tmp_path: Path,
) -> None:
    layout, sim = _layout(tmp_path, participants=3)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, list(sim.videos[:4]))
        resources = default_resources(data_dir=layout.root)
        first, cursor = _tick(instance, resources, None)
        assert [(r.asset_selection, r.partition_key) for r in first.run_requests] == [
            ([AssetKey("pretest_responses")], None)
        ]
        again, cursor = _tick(instance, resources, cursor)
        assert again.skip_reason is not None and not again.run_requests
        _run(layout, instance, [pretest_study, pretest_responses])
        collected, cursor = _tick(instance, resources, cursor)
        assert sorted(r.partition_key for r in collected.run_requests) == sorted(sim.videos[:4])  # registered videos
        assert all(r.asset_selection == [AssetKey("human_attention")] for r in collected.run_requests)
        withdrawn = session_files(layout.root, sim.study_id)[0]
        assert withdrawn.stem in set(_table(layout, "SELECT session_id FROM pretest_cursor")["session_id"])
        withdrawn.unlink()
        moved, cursor = _tick(instance, resources, cursor)
        assert [r.asset_selection for r in moved.run_requests] == [[AssetKey("pretest_responses")]]
        _run(layout, instance, [pretest_responses])
    for table in ("pretest_sessions", "pretest_cursor", "pretest_realism"):
        rows = _table(layout, f"SELECT session_id FROM {table}")
        assert withdrawn.stem not in set(rows["session_id"]) and rows["session_id"].nunique() == 2, table
