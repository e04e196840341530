"""Jobs and schedules: a nightly catch-up over every video partition and a daily report refresh.

Day to day nothing needs clicking: the ``new_video_sensor`` registers dropped videos, eager
automation conditions carry each new partition from the catalog through to its variants, and
the ``ab_export_sensor`` ingests exports, after which the report refreshes. The schedules are
the safety net: the catch-up requests a run for every video whose variants were never checked
(e.g. after a failure was fixed), the report schedule recomputes estimates daily.
"""

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from align_assets.partitions import video_partitions

__all__ = [
    "nightly_catch_up",
]

PER_VIDEO_GROUPS = ("inputs", "perception", "variants")

per_video_pipeline = define_asset_job(
    "per_video_pipeline",
    selection=AssetSelection.groups(*PER_VIDEO_GROUPS),
    partitions_def=video_partitions,
    description="Catalog -> attention -> masks -> control -> variant plans/videos/quality for one video.",
)

warehouse_refresh = define_asset_job(
    "warehouse_refresh",
    selection=AssetSelection.groups("warehouse"),
    description="Rebuild every DuckDB table from the per-video artifacts (idempotent).",
)

report_refresh = define_asset_job(
    "report_refresh",
    selection=AssetSelection.assets("ab_results", "analysis_report"),
    description="Ingest waiting A/B exports and recompute the analysis report.",
)

train_controlnet_job = define_asset_job(
    "train_controlnet",
    selection=AssetSelection.assets("controlnet_checkpoint"),
    description="Train (or resume) the ControlNet on the control tensors of the training videos.",
)


@schedule(
    job=per_video_pipeline,
    cron_schedule="0 2 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Nightly: run the per-video pipeline for every video whose variants were never checked.",
)
def nightly_catch_up(context: ScheduleEvaluationContext):
    keys = video_partitions.get_partition_keys(dynamic_partitions_store=context.instance)
    done = context.instance.get_materialized_partitions(AssetKey("variant_quality"))
    missing = [key for key in keys if key not in done]
    if not missing:
        return SkipReason(f"all {len(keys)} videos have checked variants")
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    return [RunRequest(partition_key=key, run_key=f"catch-up-{stamp}-{key}") for key in missing]


@schedule(
    job=report_refresh,
    cron_schedule="0 6 * * *",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Daily: ingest waiting exports and recompute the report.",
)
def daily_report(context: ScheduleEvaluationContext):
    return RunRequest()
