"""One dynamic partition per video; keys are validated video ids (see align_core.ids)."""

from dagster import DynamicPartitionsDefinition

VIDEO_PARTITIONS_NAME = "videos"
video_partitions = DynamicPartitionsDefinition(name=VIDEO_PARTITIONS_NAME)
