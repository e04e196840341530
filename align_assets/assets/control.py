"""Per-video ``control_tensors`` C_t = [M_t, S_t] with alignment a_t, and the alignment tables."""

from dagster import AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from align_assets.metadata import check_result, png_markdown
from align_assets.partitions import ONE_VIDEO_PER_RUN, video_partitions
from align_assets.resources import PlatformResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.stages.control import ORIGINAL_CONTROL_BYTES, control_checks, run_control

CONTROL_CHECKS = [
    AssetCheckSpec(
        "values_in_range", asset="control_tensors", description="A_t and S_t in [0, 1], M_t binary, a_t in [0, 1]."
    ),
    AssetCheckSpec(
        "frames_match_video",
        asset="control_tensors",
        description="One control tensor per video frame, at the video's size.",
    ),
    AssetCheckSpec(
        "mask_coverage_plausible",
        asset="control_tensors",
        description="A segmentable keyword's product appears in some frames and never fills most of the frame.",
    ),
]


@asset(
    partitions_def=video_partitions,
    deps=["attention_maps", "keyword_masks", "video_catalog"],
    group_name="perception",
    check_specs=CONTROL_CHECKS,
    kinds={"python", "numpy", "parquet"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def control_tensors(context: AssetExecutionContext, platform: PlatformResource):
    """C_t = [M_t, A_t * M_t] (never renormalised per frame) and a_t = sum(A M) / sum(A)."""
    result = run_control(platform.layout, context.partition_key)
    frames_df, correlation = result.frames, result.given_vs_computed_r
    bytes_on_disk = result.paths["control"].stat().st_size
    yield MaterializeResult(
        metadata={
            "overlays": png_markdown(result.paths["overlays"], alt="frame + attention heatmap + mask outline"),
            "alignment_over_time": png_markdown(result.paths["plot"], alt="alignment over time"),
            "mean_alignment": round(float(frames_df["alignment"].mean()), 4),
            "frames_with_product": int((frames_df["mask_coverage"] > 0).sum()),
            "mean_mask_coverage": round(float(frames_df["mask_coverage"].mean()), 4),
            "given_vs_computed_r": MetadataValue.float(correlation)
            if correlation is not None
            else MetadataValue.text("n/a (< 3 scenes with given values)"),
            "scorer_id": result.attention_scorer_id,
            "segmenter_id": result.masks.segmenter_id,
            "mask_skipped_reason": result.masks.skipped_reason or "not skipped",
            "bytes": bytes_on_disk,
            "bytes_vs_original": MetadataValue.text(
                f"{bytes_on_disk / ORIGINAL_CONTROL_BYTES:.1%} of the original's ~10 MB"
            ),
            "path": MetadataValue.path(str(result.paths["control"])),
        }
    )
    for outcome in control_checks(result):
        yield check_result(outcome)


frame_alignment = collect_table_asset(
    name="frame_alignment",
    source_asset="control_tensors",
    file_role="frames",
    description="Per-frame alignment a_t, attention mass and mask coverage for every video.",
    group_name="warehouse",
    order_by="video_id, frame",
)

scene_alignment = collect_table_asset(
    name="scene_alignment",
    source_asset="control_tensors",
    file_role="scenes",
    description="Per-scene alignment (attention-weighted and frame mean) beside the given attention_proportion.",
    group_name="warehouse",
    order_by="video_id, scene_number",
)
