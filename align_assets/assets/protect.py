"""Per-video ``protected_regions``: text overlays (PP-OCRv4) and user regions no variant may edit."""

import numpy as np
from dagster import AssetExecutionContext, Config, MetadataValue, asset

from align_assets.metadata import png_markdown, table_markdown
from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.io.video_io import read_frame
from align_core.io.visuals import outline_regions, save_png
from align_core.stages.protect import ProtectSettings as ProtectStageSettings
from align_core.stages.protect import run_protect


class ProtectSettings(Config, ProtectStageSettings):
    pass


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="variants",
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "parquet"},
)
def protected_regions(context: AssetExecutionContext, platform: PlatformResource, config: ProtectSettings):
    """Pixels no variant may edit, per frame: text overlays (with the strings read) and the user's regions."""
    return materialize_each_video(context, lambda video_id: protect_video(platform, config, video_id))


def protect_video(platform: PlatformResource, config: ProtectSettings, video_id: str) -> dict:
    result = run_protect(platform.layout, video_id, config)
    regions, user, out_dir, paths = result.regions, result.user, result.out_dir, result.paths
    preview_at = regions.text_keyframes()[:1] or [0]
    frame = read_frame(result.video_path, preview_at[0])
    preview = save_png(out_dir / "preview.png", outline_regions(frame, None, regions.mask(preview_at[0]), thickness=2))
    summary = regions.summary()
    strings = (
        regions.ocr.groupby("text")
        .agg(first_frame=("frame", "min"), keyframes=("frame", "nunique"), score=("score", "mean"))
        .reset_index()
    )
    return {
        "keyframes": len(regions.keyframes),
        "text_detections": summary["text_detections"],
        "distinct_strings": MetadataValue.json(summary["distinct_strings"]),
        "strings": table_markdown(strings.sort_values("first_frame"), max_rows=40),
        "protected_share": MetadataValue.float(
            round(
                float(
                    np.mean(
                        [
                            regions.mask(t).mean()
                            for t in range(0, regions.frame_count, max(1, regions.frame_count // 50))
                        ]
                    )
                ),
                4,
            )
        ),
        "user_boxes": len(user.boxes),
        "user_masks": len(user.masks),
        "faces": MetadataValue.text(summary["faces"]),
        "text_detector": MetadataValue.json(regions.lineage["text"]),
        "carry_rule": MetadataValue.text(regions.lineage["carry_rule"]),
        "ocr_seconds_per_keyframe": regions.lineage["ocr_seconds_per_keyframe"],
        "preview": png_markdown(preview, alt=f"protected regions at frame {preview_at[0]}"),
        "boxes": MetadataValue.path(str(paths["boxes"])),
    }
