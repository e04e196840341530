"""Per-video ``control_tensors`` C_t = [M_t, S_t] with alignment a_t, and the alignment tables."""

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from align_assets.assets.attention import ATTENTION_FILE
from align_assets.assets.masks import MASKS_FILE
from align_assets.metadata import png_markdown
from align_assets.partitions import ONE_VIDEO_PER_RUN, video_partitions
from align_assets.resources import PlatformResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.atomic import atomic_path
from align_core.attention import load_attention_maps
from align_core.catalog import load_catalog
from align_core.control import ControlTensors, alignment_tables, control_from_maps, given_vs_computed_correlation, save_control_tensors
from align_core.masks import load_keyword_masks
from align_core.video_io import read_frame
from align_core.visuals import curves_plot, overlay, save_png, tile

CONTROL_FILE = "control.npz"
ORIGINAL_CONTROL_BYTES = 10 * 1024 * 1024  # the original code's float32 tensors, ~10 MB per video

CONTROL_CHECKS = [
    AssetCheckSpec("values_in_range", asset="control_tensors", description="A_t and S_t in [0, 1], M_t binary, a_t in [0, 1]."),
    AssetCheckSpec("frames_match_video", asset="control_tensors", description="One control tensor per video frame, at the video's size."),
    AssetCheckSpec(
        "mask_coverage_plausible", asset="control_tensors",
        description="A segmentable keyword's product appears in some frames and never fills most of the frame.",
    ),
]


@asset(
    partitions_def=video_partitions,
    deps=["attention_maps", "keyword_masks", "video_catalog"],
    group_name="perception",
    check_specs=CONTROL_CHECKS,
    automation_condition=AutomationCondition.eager(),
    kinds={"python", "numpy", "parquet"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def control_tensors(context: AssetExecutionContext, platform: PlatformResource):
    """C_t = [M_t, A_t * M_t] (never renormalised per frame) and a_t = sum(A M) / sum(A)."""
    video_id = context.partition_key
    layout = platform.layout
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    attention = load_attention_maps(layout.artifact_dir("attention_maps", video_id) / ATTENTION_FILE)
    masks = load_keyword_masks(layout.artifact_dir("keyword_masks", video_id) / MASKS_FILE)
    control = control_from_maps(attention, masks.masks)  # streamed: one frame decoded at a time
    out_dir = layout.artifact_dir("control_tensors", video_id)
    path = save_control_tensors(out_dir / CONTROL_FILE, control)
    frames_df, scenes_df = alignment_tables(video_id, control, catalog.probe.fps, catalog.scenes)
    for frame, name in ((frames_df, "alignment_frames.parquet"), (scenes_df, "alignment_scenes.parquet")):
        with atomic_path(out_dir / name) as tmp:
            frame.to_parquet(tmp, index=False)
    correlation = given_vs_computed_correlation(scenes_df)

    plot = curves_plot(
        out_dir / "alignment.png", frames_df["time_s"].to_numpy(),
        {"alignment a_t": frames_df["alignment"].to_numpy(), "mask coverage": frames_df["mask_coverage"].to_numpy()},
        title=f"{video_id}: product share of attention over time", ylabel="share",
        boundaries=[row.start_frame / catalog.probe.fps for row in catalog.scenes.itertuples()][1:],
    )
    overlays_path = save_png(out_dir / "overlays.png", _overlay_strip(catalog, control))
    bytes_on_disk = path.stat().st_size
    yield MaterializeResult(
        metadata={
            "overlays": png_markdown(overlays_path, alt="frame + attention heatmap + mask outline"),
            "alignment_over_time": png_markdown(plot, alt="alignment over time"),
            "mean_alignment": round(float(frames_df["alignment"].mean()), 4),
            "frames_with_product": int((frames_df["mask_coverage"] > 0).sum()),
            "mean_mask_coverage": round(float(frames_df["mask_coverage"].mean()), 4),
            "given_vs_computed_r": MetadataValue.float(correlation) if correlation is not None else MetadataValue.text("n/a (< 3 scenes with given values)"),
            "scorer_id": attention.scorer_id,
            "segmenter_id": masks.segmenter_id,
            "mask_skipped_reason": masks.skipped_reason or "not skipped",
            "bytes": bytes_on_disk,
            "bytes_vs_original": MetadataValue.text(f"{bytes_on_disk / ORIGINAL_CONTROL_BYTES:.1%} of the original's ~10 MB"),
            "path": MetadataValue.path(str(path)),
        }
    )
    yield from _control_checks(catalog, control, frames_df, masks)


def _overlay_strip(catalog, control: ControlTensors, count: int = 4) -> np.ndarray:
    """Overlays at the first frame of up to ``count`` scenes (the mid frame if the product is absent there)."""
    picks = []
    coverage = control.coverage_per_frame()
    for start, end in catalog.scene_ranges[:count]:
        with_product = [t for t in range(start, end) if coverage[t] > 0]
        picks.append(with_product[len(with_product) // 2] if with_product else (start + end) // 2)
    images = [overlay(read_frame(catalog.probe.path, t), control.attention[t], control.masks[t]) for t in picks]
    alignment = control.alignment_per_frame()
    labels = [f"frame {t}  a={alignment[t]:.2f}" for t in picks]
    return tile(images, labels)


def _control_checks(catalog, control: ControlTensors, frames_df, masks) -> list[AssetCheckResult]:
    alignment = frames_df["alignment"].to_numpy()
    low, high = control.attention_range()  # S_t = A_t M_t <= A_t, so A in [0, 1] bounds S too
    in_range = bool(low >= 0 and high <= 1 and np.isfinite(alignment).all() and alignment.min() >= 0 and alignment.max() <= 1)
    probe = catalog.probe
    shape_ok = tuple(control.masks.shape) == (probe.frame_count, probe.height, probe.width)
    coverage = frames_df["mask_coverage"].to_numpy()
    if masks.skipped_reason:
        plausible, detail = True, f"not segmented: {masks.skipped_reason}"
    else:
        plausible = bool((coverage > 0).any() and coverage.max() < 0.6)
        detail = f"product in {(coverage > 0).mean():.0%} of frames, max coverage {coverage.max():.2f}"
    return [
        AssetCheckResult(
            check_name="values_in_range", passed=in_range,
            metadata={"attention_max": high, "alignment_max": float(alignment.max())},
        ),
        AssetCheckResult(
            check_name="frames_match_video", passed=shape_ok,
            metadata={"tensor_shape": str(tuple(control.masks.shape)), "video": f"{probe.frame_count} x {probe.height} x {probe.width}"},
        ),
        AssetCheckResult(
            check_name="mask_coverage_plausible", passed=plausible, severity=AssetCheckSeverity.WARN,
            metadata={"detail": detail},
        ),
    ]


frame_alignment = collect_table_asset(
    name="frame_alignment",
    source_asset="control_tensors",
    file_name="alignment_frames.parquet",
    description="Per-frame alignment a_t, attention mass and mask coverage for every video.",
    group_name="warehouse",
    order_by="video_id, frame",
)

scene_alignment = collect_table_asset(
    name="scene_alignment",
    source_asset="control_tensors",
    file_name="alignment_scenes.parquet",
    description="Per-scene alignment (attention-weighted and frame mean) beside the given attention_proportion.",
    group_name="warehouse",
    order_by="video_id, scene_number",
)
