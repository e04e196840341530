"""Sensors: new videos dropped into ``raw/videos`` become partitions and get catalogued."""

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from align_assets.partitions import VIDEO_PARTITIONS_NAME, video_partitions
from align_assets.resources import PlatformResource
from align_core.inputs.research_csvs import csv_problems, describe_csv_problems
from align_core.inputs.video_import import video_ids_in_inbox

__all__ = [
    "new_video_sensor",
]


@sensor(
    name="new_video_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=["video_catalog"],
    description="Registers every new video file in raw/videos as a partition and catalogues it.",
)
def new_video_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    ids, skipped = video_ids_in_inbox(platform.layout)
    for message in skipped:
        context.log.warning(f"ignored: {message}")
    layout = platform.layout
    problems = csv_problems(layout.keywords_csv, layout.alignment_csv)
    described = describe_csv_problems(problems, ids)
    if described:
        context.log.warning("\n".join(described))
    known = set(video_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    new = [video_id for video_id in ids if video_id not in known]
    if not new:
        return SkipReason(f"no new videos in {platform.layout.videos_dir} ({len(ids)} known)")
    return SensorResult(
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(VIDEO_PARTITIONS_NAME, new)],
        run_requests=[RunRequest(partition_key=video_id, run_key=f"catalog-{video_id}") for video_id in new],
    )
