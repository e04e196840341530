"""The human attention pretest in Dagster: the study, its collected responses, human maps, the check.

- ``pretest_study``: validates every ``D/pretest/<study_id>/study.json`` (written by ``align-pretest
  build EXPERIMENT``) and records it in ``pretest_studies``;
- ``pretest_responses``: the session files collected into ``pretest_sessions``, ``pretest_cursor``,
  ``pretest_realism`` (:mod:`align_core.pretest.collect`); ``pretest_session_sensor`` runs it when a
  session file changes;
- ``human_attention`` (per video): human maps and per-trial a_t for every study showing the video,
  and the scorer card of the stored attention maps against them;
- ``human_manipulation_check``: :mod:`analysis.pretest` over every study, into ``pretest_*`` tables.
"""

import json

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)
from dagster_duckdb import DuckDBResource

from align_assets.metadata import table_markdown
from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.io.atomic import atomic_path
from align_core.io.warehouse import read_connection, replace_table, table_exists
from align_core.pretest.collect import collect_pretest, load_collected_study, session_files_fingerprint, study_ids
from align_core.pretest.stage import study_rows, video_human_stage
from analysis.pretest import pretest_check_tables

__all__ = [
    "human_attention",
    "human_manipulation_check",
    "pretest_responses",
    "pretest_session_sensor",
    "pretest_study",
]


@asset(group_name="pretest", kinds={"duckdb"})
def pretest_study(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
) -> MaterializeResult:
    """Every built study (``align-pretest build``), validated and recorded in ``pretest_studies``."""
    frame = study_rows(platform.layout.root)
    replace_table(warehouse.database, "pretest_studies", frame)
    return MaterializeResult(
        metadata={"studies": len(frame), "preview": table_markdown(frame) if len(frame) else MetadataValue.md("none")}
    )


@asset(deps=[pretest_study], group_name="pretest", kinds={"duckdb"})
def pretest_responses(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
) -> MaterializeResult:
    """Session files -> ``pretest_sessions`` / ``pretest_cursor`` / ``pretest_realism`` (idempotent)."""
    reports = collect_pretest(platform.layout.root, warehouse.database)
    for report in reports:
        for warning in report.warnings:
            context.log.warning(warning)
    summary = pd.DataFrame(
        [{"study": r.study_id, "sessions": r.sessions, "duplicates": r.duplicates, **r.rows} for r in reports]
    )
    return MaterializeResult(
        metadata={
            "studies": len(reports),
            "sessions": int(summary["sessions"].sum()) if len(summary) else 0,
            "summary": table_markdown(summary) if len(summary) else MetadataValue.md("no studies"),
        }
    )


@sensor(
    name="pretest_session_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=["pretest_responses", "human_attention"],
    description="Collects pretest responses when a session file under data/pretest/*/sessions changes, then "
    "rebuilds human_attention for every video the studies show (per_video_automation carries the check).",
)
def pretest_session_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    state = json.loads(context.cursor) if context.cursor else {}
    root = platform.layout.root
    requests = []
    fingerprint = session_files_fingerprint(root)
    if study_ids(root) and fingerprint != state.get("files"):
        requests.append(
            RunRequest(asset_selection=[AssetKey("pretest_responses")], run_key=f"pretest-{fingerprint[:16]}")
        )
        state["files"] = fingerprint
    records = context.instance.fetch_materializations(AssetKey("pretest_responses"), limit=1).records
    collected = records[0].storage_id if records else 0
    if collected > state.get("collected", 0):
        known = set(video_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        shown = {
            str(v["video_id"]) for study_id in study_ids(root) for v in load_collected_study(root, study_id)["videos"]
        }
        requests += [
            RunRequest(
                asset_selection=[AssetKey("human_attention")], partition_key=video, run_key=f"human-{video}-{collected}"
            )
            for video in sorted(shown & known)
        ]
        state["collected"] = collected
    cursor = json.dumps(state, sort_keys=True)
    if not requests:
        return SensorResult(
            skip_reason=SkipReason("no session file changed and nothing newly collected"), cursor=cursor
        )
    return SensorResult(run_requests=requests, cursor=cursor)


@asset(
    partitions_def=video_partitions,
    deps=["pretest_responses", "keyword_masks", "attention_maps"],
    group_name="pretest",
    backfill_policy=CHEAP_BACKFILL,
    kinds={"numpy", "parquet"},
)
def human_attention(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
) -> MaterializeResult:
    """Per video: human maps and a_t per study and variant, per-trial a_t, the scorer card."""

    def one(video_id: str) -> dict:
        cursor = _cursor_rows(warehouse.database, video_id)
        trials, card = video_human_stage(platform.layout, video_id, cursor)
        for role, frame in (("trials", trials), ("scorer_card", card)):
            with atomic_path(platform.layout.artifact("human_attention", role, video_id)) as tmp:
                frame.to_parquet(tmp, index=False)
        return {"trials": int(trials[["study_id", "session_id"]].drop_duplicates().shape[0]), "frames": len(trials)}

    return materialize_each_video(context, one)


def _cursor_rows(database: str, video_id: str) -> pd.DataFrame:
    with read_connection(database) as con:
        if not table_exists(con, "pretest_cursor"):
            return pd.DataFrame(columns=["study_id", "session_id", "variant", "frame_index", "x", "y", "in_frame"])
        return con.execute("SELECT * FROM pretest_cursor WHERE video_id = ? ORDER BY ALL", [video_id]).df()


@asset(deps=[human_attention], group_name="pretest", kinds={"duckdb"})
def human_manipulation_check(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
) -> MaterializeResult:
    """Per study, variant and window: the change in human alignment vs baseline, CI and verdict."""
    layout = platform.layout
    trials = _read_all(layout.artifact_files("human_attention", "trials"))
    cards = _read_all(layout.artifact_files("human_attention", "scorer_card"))
    studies = {study_id: load_collected_study(layout.root, study_id) for study_id in study_ids(layout.root)}
    with read_connection(warehouse.database) as con:
        realism, sessions = (
            con.execute(f"SELECT * FROM {name}").df() if table_exists(con, name) else None
            for name in ("pretest_realism", "pretest_sessions")
        )
    tables = pretest_check_tables(warehouse.database, studies, trials, cards, realism, sessions=sessions)
    for name, frame in tables.items():
        replace_table(warehouse.database, name, frame)
    verdicts = tables["pretest_human_verdicts"]
    return MaterializeResult(
        metadata={
            "verdicts": table_markdown(verdicts) if len(verdicts) else MetadataValue.md("no pretest data"),
            "rows": len(tables["pretest_human_check"]),
        }
    )


def _read_all(files: list) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in files]
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
