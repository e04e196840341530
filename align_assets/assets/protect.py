"""Per-video ``protected_regions``: text overlays (PP-OCRv4) and user regions no variant may edit."""

import numpy as np
from dagster import AssetExecutionContext, AutomationCondition, Config, MetadataValue, asset
from pydantic import Field

from align_assets.metadata import png_markdown, table_markdown
from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.catalog import load_catalog
from align_core.protect import ProtectConfig, detect_protected_regions, read_user_regions
from align_core.video_io import read_frame
from align_core.visuals import outline_regions, save_png


class ProtectSettings(Config):
    detect_text: bool = Field(default=True, description="detect text overlays with PP-OCRv4 (rapidocr-onnxruntime)")
    analysis_max_side: int = Field(default=960, description="OCR runs on frames scaled so the longer side is at most this")
    stride_s: float = Field(default=0.5, description="detect every this many seconds within a scene (plus scene starts/ends)")
    margin: float = Field(default=0.01, description="box dilation, fraction of the frame's shorter side")
    text_min_score: float = Field(default=0.5, description="recognition confidence below which a detection is dropped")
    threads: int = Field(default=1, description="onnxruntime threads")


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="variants",
    automation_condition=AutomationCondition.eager(),
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "parquet"},
)
def protected_regions(context: AssetExecutionContext, platform: PlatformResource, config: ProtectSettings):
    """Pixels no variant may edit, per frame: text overlays (with the strings read) and the user's regions."""
    return materialize_each_video(context, lambda video_id: protect_video(platform, config, video_id))


def protect_video(platform: PlatformResource, config: ProtectSettings, video_id: str) -> dict:
    layout = platform.layout
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    probe = catalog.probe
    scenes = {int(n): (int(a), int(b)) for n, a, b in zip(catalog.scenes["scene_number"], catalog.scenes["start_frame"], catalog.scenes["end_frame"], strict=True)}
    user = read_user_regions(video_id, layout.protect_csv, layout.protect_masks_dir(video_id), probe.frame_count, probe.height, probe.width, scenes)
    settings = ProtectConfig(
        detect_text=config.detect_text, analysis_max_side=config.analysis_max_side, stride_s=config.stride_s,
        margin=config.margin, text_min_score=config.text_min_score, threads=config.threads,
    )
    regions = detect_protected_regions(video_id, probe.path, catalog.scene_ranges, user, settings)
    out_dir = layout.artifact_dir("protected_regions", video_id)
    paths = regions.save(out_dir)
    preview_at = regions.text_keyframes()[:1] or [0]
    frame = read_frame(probe.path, preview_at[0])
    preview = save_png(out_dir / "preview.png", outline_regions(frame, None, regions.mask(preview_at[0]), thickness=2))
    summary = regions.summary()
    strings = regions.ocr.groupby("text").agg(first_frame=("frame", "min"), keyframes=("frame", "nunique"), score=("score", "mean")).reset_index()
    return {
        "keyframes": len(regions.keyframes),
        "text_detections": summary["text_detections"],
        "distinct_strings": MetadataValue.json(summary["distinct_strings"]),
        "strings": table_markdown(strings.sort_values("first_frame"), max_rows=40),
        "protected_share": MetadataValue.float(round(float(np.mean([regions.mask(t).mean() for t in range(0, regions.frame_count, max(1, regions.frame_count // 50))])), 4)),
        "user_boxes": len(user.boxes),
        "user_masks": len(user.masks),
        "faces": MetadataValue.text(summary["faces"]),
        "text_detector": MetadataValue.json(regions.lineage["text"]),
        "carry_rule": MetadataValue.text(regions.lineage["carry_rule"]),
        "ocr_seconds_per_keyframe": regions.lineage["ocr_seconds_per_keyframe"],
        "preview": png_markdown(preview, alt=f"protected regions at frame {preview_at[0]}"),
        "boxes": MetadataValue.path(str(paths["boxes"])),
    }
