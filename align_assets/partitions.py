"""One dynamic partition per video (keys are validated video ids), and how backfills batch them."""

from dagster import BackfillPolicy, DynamicPartitionsDefinition

VIDEO_PARTITIONS_NAME = "videos"
video_partitions = DynamicPartitionsDefinition(name=VIDEO_PARTITIONS_NAME)

#: Cheap per-video stages without per-video checks run several videos per backfill run.
CHEAP_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=16)
#: Stages with per-video asset checks, or diffusion steps in the ``gpu`` pool, run one video per
#: run: a failure stays with its video and each check result belongs to one video.
ONE_VIDEO_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)
