"""Per-video ``keyword_masks``: M_t from the ``segmenter`` resource, or empty with a reason."""

from dagster import AssetExecutionContext, AutomationCondition, MaterializeResult, MetadataValue, asset

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource, SegmenterResource
from align_core.stages.masks import run_masks


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="perception",
    automation_condition=AutomationCondition.eager(),
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "numpy"},
)
def keyword_masks(context: AssetExecutionContext, platform: PlatformResource, segmenter: SegmenterResource) -> MaterializeResult:
    """Where the keyword's product is in each frame; screened keywords give empty masks with a reason."""
    choice = segmenter.choice(platform)

    def one(video_id: str) -> dict:
        stage = run_masks(platform.layout, video_id, choice, device=platform.defaults.device)
        result, summary = stage.result, stage.result.summary()
        return {
            "keyword": stage.keyword.keyword or "(empty)",
            "segmenter_id": result.segmenter_id,
            "skipped_reason": MetadataValue.text(result.skipped_reason or "not skipped"),
            "threshold": result.threshold,
            "frames": result.frame_count,
            "frames_with_product": summary["frames_with_product"],
            "mean_coverage": round(summary["mean_coverage"], 4),
            "lineage": MetadataValue.json(result.lineage),
            "bytes": stage.path.stat().st_size,
            "path": MetadataValue.path(str(stage.path)),
        }

    return materialize_each_video(context, one)
