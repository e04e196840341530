"""The whole asset graph, in process, on a three-video demo corpus (two edited, one screened)."""

import json
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance
from safetensors.torch import load_file

from align_assets.resources import default_resources
from align_assets.runner import materialize_everything, prepare_instance
from align_core.io.layout import DataLayout
from align_core.io.video_io import probe_video
from align_core.stages.checkpoint import read_checkpoint_pointer
from align_demo.corpus import generate_demo_corpus

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

FAST = {
    "controlnet_checkpoint": {
        "steps": 4,
        "batch_size": 2,
        "checkpoint_every": 2,
        "validate_every": 2,
        "warmup_steps": 1,
    },
    "variant_quality": {"measure_every": 4, "lpips_every": 24},
    # The demo's salience editor edits every frame; here the keyframe + DIS-flow path runs through Dagster.
    "variant_videos": {"propagation": "keyframes", "keyframe_stride": 6},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, shared_data: Path):
    root = tmp_path_factory.mktemp("e2e")
    layout = DataLayout(root / "data").ensure()
    corpus = generate_demo_corpus(
        layout,
        n_videos=3,
        seed=3,
        keywords_source=shared_data / "keywords.csv",
        n_empty_keywords=1,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(4.0, 4.5),
    )
    prepare_instance(layout.dagster_home)
    with DagsterInstance.get() as instance:
        failures = materialize_everything(
            corpus.video_ids,
            instance=instance,
            resources=default_resources(data_dir=layout.root, profile="demo"),
            op_config=FAST,
            log=lambda *_: None,
        )
        yield layout, corpus, instance, failures


def test_every_stage_materializes(pipeline) -> None:
    layout, corpus, instance, failures = pipeline
    assert failures == {}
    from align_assets.definitions import defs

    for key in defs.resolve_asset_graph().materializable_asset_keys:
        assert instance.get_latest_materialization_event(key) is not None, key.to_user_string()
    # the demo profile's own check compared the report's estimates with the planted effects
    from dagster import AssetCheckKey

    planted = AssetCheckKey(AssetKey("analysis_report"), "planted_effects_recovered")
    executions = instance.event_log_storage.get_asset_check_execution_history(planted, limit=1)
    assert executions, "the planted-effects check never ran"
    evaluation = executions[0].event.dagster_event.event_specific_data if executions[0].event else None
    # required to pass: every planted effect inside its (matched-video) estimate's 95% CI
    assert executions[0].status.value == "SUCCEEDED" and evaluation is not None and evaluation.passed, (
        executions[0].status,
        evaluation.metadata if evaluation is not None else None,
    )


def test_warehouse_tables(pipeline) -> None:
    layout, corpus, _, _ = pipeline
    edited = sorted(v.video_id for v in corpus.videos if v.keyword_kind == "product")
    assert len(edited) == 2
    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    count = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    assert count("SELECT count(*) FROM videos") == 3
    assert count("SELECT count(DISTINCT video_id) FROM frame_alignment") == 3
    assert count(f"SELECT count(*) FROM variants WHERE video_id = '{edited[0]}'") == 7
    assert count("SELECT count(*) FROM variants") == 14  # the screened video is not edited
    assert count("SELECT count(*) FROM variant_quality") == 14
    assert count("SELECT count(DISTINCT variant) FROM manipulation_check") == 7
    assert count("SELECT count(*) FROM ab_results") > 0
    tested = [row[0] for row in con.execute("SELECT DISTINCT video_id FROM ab_results ORDER BY 1").fetchall()]
    assert tested == edited  # only videos whose variants exist are in the experiment
    assert count("SELECT count(*) FROM analysis_lift") > 0
    assert con.execute("SELECT typeof(video_id) FROM videos LIMIT 1").fetchone()[0] == "VARCHAR"


def test_variant_videos_are_playable_with_audio(pipeline) -> None:
    layout, corpus, _, _ = pipeline
    video = next(v for v in corpus.videos if v.keyword_kind == "product")
    source = probe_video(video.path)
    out = layout.artifact_dir("variant_videos", video.video_id)
    names = ["baseline", "early_boost", "middle_boost", "late_boost", "full_boost", "reduction", "placebo"]
    for name in names:
        probe = probe_video(out / f"{name}.mp4")
        assert (probe.video_codec, probe.width, probe.height, probe.frame_count) == (
            "h264",
            source.width,
            source.height,
            source.frame_count,
        )
        assert probe.fps == pytest.approx(source.fps) and probe.has_audio
    assert probe_video(out / "comparison.mp4").video_codec == "h264"
    assert (out / "contact_sheet.png").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == source.sha256 and set(manifest["variants"]) == set(names)
    assert manifest["config"]["edit_every_frame"] is False and 0 < manifest["keyframe_share"] < 0.5


def test_screened_video_is_skipped_with_reason(pipeline) -> None:
    layout, corpus, instance, _ = pipeline
    screened = next(v for v in corpus.videos if v.keyword_kind != "product")
    records = instance.fetch_materializations(AssetKey("variant_plans"), limit=20).records
    metadata = next(
        r.asset_materialization.metadata for r in records if r.asset_materialization.partition == screened.video_id
    )
    assert metadata["skipped"].value is True and "keyword screened" in metadata["reason"].value


def test_checkpoint_is_safetensors_with_recorded_sha(pipeline) -> None:
    layout, _, instance, _ = pipeline
    current = read_checkpoint_pointer(layout)  # its paths are stored relative to the data directory
    weights = Path(current["controlnet_dir"]) / "diffusion_pytorch_model.safetensors"
    assert load_file(str(weights))  # loads without pickle
    event = instance.get_latest_materialization_event(AssetKey("controlnet_checkpoint"))
    metadata = event.asset_materialization.metadata
    assert metadata["checkpoint_sha256"].value == current["weights_sha256"]
    assert "NOT pretrained" in json.dumps(current) or "random" in metadata["weights_used"].value


def test_rerun_is_idempotent(pipeline) -> None:
    """Re-running an edited video's partition and the unpartitioned assets adds no rows anywhere."""
    layout, corpus, instance, _ = pipeline
    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    before = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("variants", "manipulation_check", "ab_results", "scenes")
    }
    (edited,) = con.execute("SELECT min(video_id) FROM variants").fetchone()
    con.close()
    assert edited in corpus.video_ids and before["variants"] > 0
    failures = materialize_everything(
        [edited],
        instance=instance,
        resources=default_resources(data_dir=layout.root, profile="demo"),
        op_config=FAST,
        log=lambda *_: None,
    )
    assert failures == {}
    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in before}
    assert after == before


def test_schedules_and_backfill_selection(pipeline) -> None:
    from dagster import build_schedule_context

    from align_assets.backfill import main as backfill_main
    from align_assets.backfill import select_partitions
    from align_assets.schedules import nightly_catch_up

    layout, corpus, instance, _ = pipeline
    import datetime as dt

    tick = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.timezone.utc)
    skipped = nightly_catch_up(build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert "have checked variants" in skipped.skip_message
    instance.add_dynamic_partitions("videos", ["late-arrival"])
    try:
        requests = nightly_catch_up(build_schedule_context(instance=instance, scheduled_execution_time=tick))
        assert [(r.partition_key, r.run_key) for r in requests] == [("late-arrival", "catch-up-20261125-late-arrival")]
    finally:
        instance.delete_dynamic_partition("videos", "late-arrival")
    assert "late-arrival" not in instance.get_dynamic_partitions("videos")

    industries = {v.industry for v in corpus.videos}
    one = sorted(industries)[0]
    expected = sorted(v.video_id for v in corpus.videos if v.industry == one)
    assert select_partitions(layout, industries=[one.upper()]) == expected
    assert select_partitions(layout, added_since=__import__("datetime").date(2000, 1, 1)) == sorted(corpus.video_ids)
    assert select_partitions(layout, added_until=__import__("datetime").date(2000, 1, 1)) == []
    assert backfill_main(["--data-dir", str(layout.root), "--industry", one, "--print-keys"]) == 0


def _controlnet_resources(layout: DataLayout) -> dict:
    """The demo resources with the research editor: ControlNet on the tiny trained checkpoint."""
    from align_assets.resources import EditorResource

    editor = EditorResource(editor="controlnet", controlnet_steps=2, controlnet_resolution=64)
    return default_resources(data_dir=layout.root, profile="demo", editor=editor)


def test_controlnet_editor_runs_through_the_asset_on_the_trained_checkpoint(pipeline) -> None:
    """The research editor path: the editor resource set to controlnet, on the tiny checkpoint."""
    from dagster import materialize

    from align_assets.definitions import build_definitions

    layout, corpus, instance, _ = pipeline
    edited = next(v.video_id for v in corpus.videos if v.keyword_kind == "product")
    resources = _controlnet_resources(layout)
    defs = build_definitions(resources)
    assert AssetKey("controlnet_checkpoint") in defs.resolve_asset_graph().get(AssetKey("variant_videos")).parent_keys
    result = materialize(
        list(defs.assets),
        selection=["variant_videos"],
        partition_key=edited,
        instance=instance,
        resources=resources,
        run_config={"ops": {"variant_videos": {"config": {"keyframe_stride": 24, "propagation": "keyframes"}}}},
    )
    assert result.success
    current = json.loads((layout.artifact_dir("controlnet_checkpoint") / "current.json").read_text())
    manifest = json.loads((layout.artifact_dir("variant_videos", edited) / "manifest.json").read_text())
    assert manifest["editor"]["editor"] == "controlnet"
    assert manifest["editor"]["checkpoint_sha256"] == current["weights_sha256"]
    assert "NOT pretrained" in json.dumps(manifest["editor"])
    assert probe_video(layout.artifact_dir("variant_videos", edited) / "full_boost.mp4").video_codec == "h264"


def test_new_checkpoint_makes_variant_videos_stale_only_for_the_editor_that_uses_it(pipeline) -> None:
    """Runs after the ControlNet-editor test above: its variant_videos were made with the checkpoint."""
    from dagster import materialize
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    from align_assets.definitions import all_assets, build_definitions

    layout, corpus, instance, _ = pipeline
    edited = next(v.video_id for v in corpus.videos if v.keyword_kind == "product")
    controlnet_assets = list(build_definitions(_controlnet_resources(layout)).assets)
    status = get_stale_status_resolver(instance, controlnet_assets).get_status(AssetKey("variant_videos"), edited)
    assert status == StaleStatus.FRESH
    retrain = {**FAST["controlnet_checkpoint"], "steps": 6}
    result = materialize(
        all_assets,
        selection=["controlnet_checkpoint"],
        instance=instance,
        resources=default_resources(data_dir=layout.root, profile="demo"),
        run_config={"ops": {"controlnet_checkpoint": {"config": retrain}}},
    )
    assert result.success
    status = get_stale_status_resolver(instance, controlnet_assets).get_status(AssetKey("variant_videos"), edited)
    assert status == StaleStatus.STALE
    # the demo's salience editor never reads the checkpoint, so a retrain leaves its videos (the
    # other edited video, rendered by the pipeline with the salience editor) fresh
    other = [v.video_id for v in corpus.videos if v.keyword_kind == "product" and v.video_id != edited][0]
    salience = get_stale_status_resolver(instance, all_assets).get_status(AssetKey("variant_videos"), other)
    assert salience == StaleStatus.FRESH


def test_only_eligible_variants_reach_the_ab_export(pipeline) -> None:
    """Issue 15 item 5: every rendered variant is in ``variants`` with ``eligible`` and its reason;
    the demo export simulates eligible arms only."""
    import pandas as pd

    layout, _, _, _ = pipeline
    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    arms = con.execute("SELECT video_id, variant, eligible, exclusion_reason FROM variants").df()
    checks = con.execute(
        "SELECT video_id, variant, bool_and(passed) FILTER (WHERE decides) AS passed FROM manipulation_check GROUP BY ALL"
    ).df()
    # issue 11: a variant that changed protected pixels or protected text is not eligible either
    stimulus = con.execute(
        "SELECT video_id, variant, passed_psnr AND passed_ocr AS stimulus_passed FROM stimulus_check"
    ).df()
    con.close()
    merged = arms.merge(checks, on=["video_id", "variant"]).merge(stimulus, on=["video_id", "variant"])
    assert len(merged) == len(arms) == 14
    assert (merged["eligible"] == (merged["passed"] & merged["stimulus_passed"])).all()
    assert merged.loc[merged["eligible"], "exclusion_reason"].isna().all()
    assert (
        merged.loc[~merged["eligible"], "exclusion_reason"]
        .str.match("manipulation check failed|not manipulable|unreachable|protected (?:region|text) changed")
        .all()
    )
    assert (
        merged.loc[~merged["stimulus_passed"], "exclusion_reason"]
        .str.contains("protected (?:region|text) changed .*: frame")
        .all()
    )
    exported = pd.read_csv(layout.ab_inbox_dir / "done" / "demo-exp-1.csv", dtype=str)[
        ["video_id", "variant"]
    ].drop_duplicates()
    eligible = arms.loc[arms["eligible"], ["video_id", "variant"]].astype(str)
    assert sorted(map(tuple, exported.to_numpy())) == sorted(map(tuple, eligible.to_numpy()))
