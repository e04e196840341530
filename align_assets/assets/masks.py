"""Per-video ``keyword_masks``: M_t from the ``segmenter`` resource, or empty with a reason.

Annotated masks (``annotated``, ``clipseg+annotated``) also write a per-frame diagnostics table
that five partitioned asset checks read: area band, flow consistency, box IoU, appearance (errors),
and whether a product that left or was covered was found again (a warning naming the frames
where it was not, with a thumbnail strip of them beside the masks).
"""

import warnings

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource, SegmenterResource
from align_core.perception.annotated_masks import CHECK_DESCRIPTIONS, WARN_CHECKS, check_annotated_masks
from align_core.stages.masks import run_masks

__all__ = [
    "keyword_masks",
]


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="perception",
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "numpy"},
)
def keyword_masks(
    context: AssetExecutionContext, platform: PlatformResource, segmenter: SegmenterResource
) -> MaterializeResult:
    """Where the keyword's product is in each frame; screened keywords give empty masks with a reason."""
    choice = segmenter.choice(platform)

    def one(video_id: str) -> dict:
        stage = run_masks(platform.layout, video_id, choice, device=platform.defaults.device)
        result, summary = stage.result, stage.result.summary()
        metadata = {
            "keyword": stage.keyword.keyword or "(empty)",
            "mask_source": stage.mask_source,
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
        if stage.diagnostics is not None:
            metadata["annotated_checks"] = MetadataValue.md(
                "\n".join(
                    f"- **{c.name}**: {'passed' if c.passed else 'WARNING' if c.name in WARN_CHECKS else 'FAILED'} "
                    f"({c.detail})"
                    for c in check_annotated_masks(stage.diagnostics)
                )
            )
            absent = stage.diagnostics.get("absent")
            metadata["frames_absent_not_refound"] = int(absent.sum()) if absent is not None else 0
        return metadata

    return materialize_each_video(context, one)


def _annotated_check(check_name: str):
    @asset_check(
        asset=keyword_masks,
        name=check_name,
        partitions_def=video_partitions,
        description=CHECK_DESCRIPTIONS[check_name],
    )
    def _check(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
        path = platform.layout.artifact("keyword_masks", "diagnostics", context.partition_key)
        if not path.exists():
            return AssetCheckResult(passed=True, metadata={"not_applicable": "masks were not made from annotations"})
        outcome = next(c for c in check_annotated_masks(pd.read_parquet(path)) if c.name == check_name)
        metadata = {
            "detail": MetadataValue.text(outcome.detail),
            "failing_frames": MetadataValue.json(outcome.failing_frames),
        }
        strip = platform.layout.artifact("keyword_masks", "absent_strip", context.partition_key)
        if check_name == "annotated_product_found" and strip.exists():
            metadata["thumbnails"] = MetadataValue.path(str(strip))
        return AssetCheckResult(
            passed=outcome.passed,
            severity=AssetCheckSeverity.WARN if check_name in WARN_CHECKS else AssetCheckSeverity.ERROR,
            metadata=metadata,
        )

    return _check


with warnings.catch_warnings():
    # Partitioned asset checks are a Dagster "preview" feature; it is what gives each video its
    # own check results while keyword_masks keeps its multi-video backfill runs.
    warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
    annotated_area_band = _annotated_check("annotated_area_band")
    annotated_flow_consistency = _annotated_check("annotated_flow_consistency")
    annotated_box_iou = _annotated_check("annotated_box_iou")
    annotated_appearance = _annotated_check("annotated_appearance")
    annotated_product_found = _annotated_check("annotated_product_found")
