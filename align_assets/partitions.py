"""One dynamic partition per video (keys are validated video ids), and how backfills batch them."""

from collections.abc import Callable, Mapping
from typing import Any

from dagster import AssetExecutionContext, BackfillPolicy, DynamicPartitionsDefinition, MaterializeResult

__all__ = [
    "CHEAP_BACKFILL",
    "ONE_VIDEO_PER_RUN",
    "VIDEO_PARTITIONS_NAME",
    "materialize_each_video",
    "video_partitions",
]

VIDEO_PARTITIONS_NAME = "videos"
#: Assets on these partitions declare no automation condition: the ``per_video_automation`` sensor
#: carries each new or updated video downstream (align_assets.automation.PER_VIDEO_CONDITION).
video_partitions = DynamicPartitionsDefinition(name=VIDEO_PARTITIONS_NAME)

#: Cheap per-video stages without per-video checks run several videos per backfill run.
CHEAP_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=16)
#: Stages with per-video asset checks, or diffusion steps in the ``gpu`` pool, run one video per
#: run: a failure stays with its video and each check result belongs to one video.
ONE_VIDEO_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)


def materialize_each_video(
    context: AssetExecutionContext, build: Callable[[str], Mapping[str, Any]]
) -> MaterializeResult:
    """Run ``build(video_id)`` for every partition of the run, attaching its metadata to that video.

    Lets a cheap stage take one video (sensor/automation runs) or a batch (``CHEAP_BACKFILL``)
    with the same code, and keeps each video's metadata its own.
    """
    for video_id in context.partition_keys:
        context.add_asset_metadata(build(video_id), partition_key=video_id)
    return MaterializeResult()
