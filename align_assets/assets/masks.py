"""Per-video ``keyword_masks``: M_t from the profile's segmenter, or empty with a reason.

Annotated masks (``annotated``, ``clipseg+annotated``) also write a per-frame diagnostics table
that four partitioned asset checks read: area band, flow consistency, box IoU, appearance.
"""

import warnings

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.annotated_masks import CHECK_DESCRIPTIONS, check_annotated_masks, save_mask_diagnostics
from align_core.annotations import has_annotations
from align_core.catalog import load_catalog
from align_core.masks import DEFAULT_THRESHOLD, make_segmenter, resolve_mask_source, save_keyword_masks, segment_video

MASKS_FILE = "masks.npz"
DIAGNOSTICS_FILE = "annotated_diagnostics.parquet"


class MaskSettings(Config):
    segmenter: str | None = Field(
        default=None,
        description="provided | annotated | clipseg | clipseg+annotated (default: the profile's; 'provided' falls back "
        "to annotations in raw/annotations.csv when a video has no provided mask file, 'clipseg' is constrained by them)",
    )
    clipseg_model: str = Field(
        default="CIDAS/clipseg-rd64-refined", description="local directory or a hub id already in the local cache"
    )
    threshold: float = Field(default=DEFAULT_THRESHOLD, description="a pixel is product when its probability exceeds this")
    batch_size: int = Field(default=8)


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="perception",
    automation_condition=AutomationCondition.eager(),
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "numpy"},
)
def keyword_masks(context: AssetExecutionContext, platform: PlatformResource, config: MaskSettings) -> MaterializeResult:
    """Where the keyword's product is in each frame; screened keywords give empty masks with a reason."""
    return materialize_each_video(context, lambda video_id: masks_for_video(platform, config, video_id))


def masks_for_video(platform: PlatformResource, config: MaskSettings, video_id: str) -> dict:
    layout = platform.layout
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    verdict = catalog.keyword
    out_dir = layout.artifact_dir("keyword_masks", video_id)
    name, skipped = resolve_mask_source(
        config.segmenter or platform.defaults.segmenter,
        provided_file=layout.provided_mask_path(video_id),
        annotated=has_annotations(layout, video_id),
    )
    if not verdict.segmentable:
        skipped = f"keyword screened ({verdict.category}): {verdict.reason}"
    segmenter = None
    if skipped is None:
        annotated = {"video_id": video_id, "scene_ranges": catalog.scene_ranges, "layout": layout}
        model = {"model": config.clipseg_model, "device": platform.defaults.device}
        kwargs = {"provided": {"mask_path": layout.provided_mask_path(video_id)}, "annotated": annotated,
                  "clipseg": model, "clipseg+annotated": {**model, **annotated}}[name]
        segmenter = make_segmenter(name, **kwargs)
    result = segment_video(
        catalog.probe.path, verdict.keyword, segmenter, threshold=config.threshold,
        batch_size=config.batch_size, screened_reason=skipped, probe=catalog.probe,
    )
    path = save_keyword_masks(out_dir / MASKS_FILE, result)
    diagnostics = getattr(segmenter, "diagnostics", None)
    save_mask_diagnostics(out_dir / DIAGNOSTICS_FILE, diagnostics)
    summary = result.summary()
    metadata = {
        "keyword": verdict.keyword or "(empty)",
        "mask_source": name if skipped is None else "none",
        "segmenter_id": result.segmenter_id,
        "skipped_reason": MetadataValue.text(result.skipped_reason or "not skipped"),
        "threshold": result.threshold,
        "frames": result.frame_count,
        "frames_with_product": summary["frames_with_product"],
        "mean_coverage": round(summary["mean_coverage"], 4),
        "lineage": MetadataValue.json(result.lineage),
        "bytes": path.stat().st_size,
        "path": MetadataValue.path(str(path)),
    }
    if diagnostics is not None:
        metadata["annotated_checks"] = MetadataValue.md(
            "\n".join(f"- **{c.name}**: {'passed' if c.passed else 'FAILED'} ({c.detail})"
                      for c in check_annotated_masks(diagnostics))
        )
    return metadata


def _annotated_check(check_name: str):
    @asset_check(
        asset=keyword_masks, name=check_name, partitions_def=video_partitions,
        description=CHECK_DESCRIPTIONS[check_name],
    )
    def _check(context: AssetCheckExecutionContext, platform: PlatformResource) -> AssetCheckResult:
        video_id = context.partition_key
        path = platform.layout.artifact_dir("keyword_masks", video_id) / DIAGNOSTICS_FILE
        if not path.exists():
            return AssetCheckResult(passed=True, metadata={"not_applicable": "masks were not made from annotations"})
        outcome = next(c for c in check_annotated_masks(pd.read_parquet(path)) if c.name == check_name)
        return AssetCheckResult(
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata={"detail": MetadataValue.text(outcome.detail),
                      "failing_frames": MetadataValue.json(outcome.failing_frames)},
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
