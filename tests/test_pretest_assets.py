"""The pretest's Dagster assets and sensor on a real data directory and a real DuckDB warehouse."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize
from pretest_fixture import EXPERIMENT_ID, FPS, Viewer, make_pretest_data
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


def _post(client, session: dict, record: dict) -> None:
    headers = {"X-Pretest-Token": session["token"]}
    reply = client.post(f"/api/sessions/{session['session_id']}/records", json=record, headers=headers)
    assert reply.status_code == 200, reply.text


def _take_part(client, number: int) -> int:
    """One scripted participant through the real server app: every trial's cursor, checks, realism
    (their count returned)."""
    reply = client.post("/api/sessions", json={"batch_id": uuid.uuid4().hex, "consent": True, "crowd": {}})
    assert reply.status_code == 200, reply.text
    session = reply.json()
    for trial in session["plan"]["trials"]:
        viewer = Viewer.drawn((9, number, trial["video_id"]), trial["variant"] == "early_boost")
        duration = trial["duration_s"]
        times = np.arange(int(round(duration * FPS))) / FPS  # one sample per displayed frame
        samples = [[float(t), *viewer.target(float(t), duration)] for t in times]
        for start in range(0, len(samples), 15):
            record = {"kind": "cursor", "batch_id": uuid.uuid4().hex, "trial_index": trial["trial_index"]}
            record |= {"video_id": trial["video_id"], "variant": trial["variant"], "practice": False}
            record |= {"viewport": {"w": 1000, "h": 760}, "video_rect": {"x": 314.0, "y": 40.0, "w": 372.0, "h": 620.0}}
            _post(client, session, record | {"samples": samples[start : start + 15]})
        if trial["check"]:
            check = {"trial_index": trial["trial_index"], "shown_at_s": trial["check"]["at_s"], "clicked": True}
            _post(client, session, {"kind": "attention_check", "batch_id": uuid.uuid4().hex, **check, "rt_ms": 600.0})
    for pair in session["plan"]["realism"]:
        answer = {"realism_index": pair["realism_index"], "video_id": pair["video_id"], "variant": pair["variant"]}
        _post(
            client,
            session,
            {"kind": "realism", "batch_id": uuid.uuid4().hex, **answer, "mode": "2afc", "choice": "left"},
        )
    _post(client, session, {"kind": "complete", "batch_id": uuid.uuid4().hex})
    return len(session["plan"]["realism"])


# slow: builds a study with the real CLI and materializes the four pretest assets on it
@pytest.mark.slow
def test_assets_run_on_a_study_the_real_build_made_and_find_the_boost_in_its_served_responses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    study = _served_study(data, participants=12)  # 4 per list: the check's default 10 per arm
    layout = DataLayout(data)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ["v1", "v2", "v3"])
        _run(layout, instance, [pretest_study, pretest_responses])
        for video_id in ("v1", "v2", "v3"):
            _run(layout, instance, [human_attention], video_id)
        _run(layout, instance, [human_manipulation_check])
    built = json.loads((study / "study.json").read_text())
    studies = _table(layout, "SELECT * FROM pretest_studies")
    assert studies[["study_id", "design_sha256", "videos"]].values.tolist() == [[study.name, built["design_sha256"], 3]]
    sessions = _table(layout, "SELECT * FROM pretest_sessions")
    assert len(sessions) == 12 and sessions["completed"].all()
    assert (sessions["attention_checks_passed"] == sessions["attention_checks_shown"]).all()
    assert _table(layout, "SELECT count(*) AS n FROM pretest_cursor")["n"][0] == 12 * 3 * 45
    check = _table(layout, "SELECT * FROM pretest_human_check").set_index(["variant", "window"])
    boost, placebo = check.loc[("early_boost", "early")], check.loc[("placebo", "early")]
    assert boost["verdict"] == "passed" and 0.3 < boost["estimate"] < 0.9 and boost["participants_variant"] == 12
    assert placebo["verdict"] == "not passed" and abs(placebo["estimate"]) < 0.1
    realism = _table(layout, "SELECT * FROM pretest_realism_summary")
    assert realism["answers"].sum() == 12 * 2  # two edited videos in each list, one pair each


def test_the_report_is_built_after_the_human_check_it_shows() -> None:
    """The report's Pretest section reads human_manipulation_check's tables: a run of both (the
    README's one align-backfill command) must build the report second, and its eager automation
    must follow a new check. Before the dependency, align-backfill built it first, without the section."""
    from align_assets.production import build_definitions

    defs = build_definitions()

    graph = defs.resolve_asset_graph()
    report = AssetKey("analysis_report")
    assert AssetKey("human_manipulation_check") in graph.get(report).parent_keys


def _served_study(data: Path, participants: int) -> Path:
    """``data`` with a study the real ``align-pretest build`` made and ``participants`` who took it."""
    from starlette.testclient import TestClient

    from align_core.cli.pretest import main as align_pretest
    from align_core.pretest.server import PretestApp, guarded_app

    make_pretest_data(data, videos=3, seconds=3.0)
    assert align_pretest(["build", EXPERIMENT_ID, "--data-dir", str(data)]) == 0
    study = data / "pretest" / f"{EXPERIMENT_ID}-pretest"
    client = TestClient(guarded_app(PretestApp(study), "127.0.0.1", 18767), base_url="http://127.0.0.1:18767")
    for number in range(participants):
        _take_part(client, number)
    return study


# slow: the README's align-backfill command end to end (a subprocess with its own Dagster instance)
@pytest.mark.slow
def test_the_readmes_one_command_collects_maps_checks_and_reports(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = tmp_path / "ads"
    _served_study(data, participants=12)
    layout = DataLayout(data)
    layout.videos_dir.mkdir(parents=True, exist_ok=True)
    for video_id in ("v1", "v2", "v3"):  # the lab's own videos, as align-backfill finds them
        (layout.videos_dir / f"{video_id}.mp4").write_bytes(layout.variant_video(video_id, "baseline").read_bytes())
    selection = ["pretest_study", "pretest_responses", "human_attention", "human_manipulation_check", "analysis_report"]
    argv = [sys.executable, "-m", "align_assets.backfill", "--data-dir", str(data)]
    argv += [part for name in selection for part in ("--asset", name)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # it sets its own DAGSTER_HOME
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (layout.reports_dir / "report.html").read_text()
    assert "<h2>Pretest</h2>" in page and "Human manipulation check per variant" in page
    verdicts = _table(layout, "SELECT variant, human_check FROM pretest_human_verdicts")
    assert verdicts.set_index("variant")["human_check"]["early_boost"] == "passed"
