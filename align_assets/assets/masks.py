"""Per-video ``keyword_masks``: M_t from the profile's segmenter, or empty with a reason."""

from dagster import AssetExecutionContext, AutomationCondition, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.catalog import load_catalog
from align_core.masks import DEFAULT_THRESHOLD, make_segmenter, save_keyword_masks, segment_video

MASKS_FILE = "masks.npz"


class MaskSettings(Config):
    segmenter: str | None = Field(default=None, description="provided | clipseg (default: the profile's)")
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
    name = config.segmenter or platform.defaults.segmenter
    skipped = None if verdict.segmentable else f"keyword screened ({verdict.category}): {verdict.reason}"
    segmenter = None
    if skipped is None and name == "provided":
        mask_file = layout.provided_mask_path(video_id)
        if mask_file.exists():
            segmenter = make_segmenter("provided", mask_path=mask_file)
        else:
            skipped = f"no provided mask file at {mask_file} (the demo profile segments with provided masks; use clipseg)"
    elif skipped is None:
        segmenter = make_segmenter(name, model=config.clipseg_model, device=platform.defaults.device)
    result = segment_video(
        catalog.probe.path, verdict.keyword, segmenter, threshold=config.threshold,
        batch_size=config.batch_size, screened_reason=skipped, probe=catalog.probe,
    )
    path = save_keyword_masks(layout.artifact_dir("keyword_masks", video_id) / MASKS_FILE, result)
    summary = result.summary()
    return {
        "keyword": verdict.keyword or "(empty)",
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
