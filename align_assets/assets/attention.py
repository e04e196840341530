"""Per-video ``attention_maps``: A_t by the meaning-map procedure with the profile's scorer."""

import time

from dagster import AssetExecutionContext, AutomationCondition, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_core.attention import AttentionConfig, compute_attention_maps, make_patch_scorer, save_attention_maps
from align_core.catalog import load_catalog

ATTENTION_FILE = "attention.npz"


class AttentionSettings(Config):
    """Overrides for the attention stage (defaults: the profile's scorer, the documented procedure)."""

    scorer: str | None = Field(default=None, description="feature_richness | spectral_residual | llava | provided")
    llava_model_path: str | None = Field(default=None, description="local LLaVA directory (research profile)")
    provided_maps: str | None = Field(default=None, description="directory or npz of external heatmaps")
    keyframe_stride: int = Field(default=6, description="score every k-th frame of a scene (and each scene's first)")
    max_long_side: int = Field(default=512, description="working resolution for scoring, maps are resized back")


def build_scorer(settings: AttentionSettings, platform: PlatformResource):
    """The configured scorer; the research profile's LLaVA needs a local model path."""
    name = settings.scorer or platform.defaults.patch_scorer
    if name == "llava":
        if not settings.llava_model_path:
            raise ValueError("the llava scorer needs llava_model_path (a local LLaVA directory); no hub downloads here")
        return make_patch_scorer("llava", model_path=settings.llava_model_path, device=platform.defaults.device)
    if name == "provided":
        if not settings.provided_maps:
            raise ValueError("the provided scorer needs provided_maps (a directory or npz of heatmaps)")
        return make_patch_scorer("provided", source=settings.provided_maps)
    return make_patch_scorer(name)


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="perception",
    automation_condition=AutomationCondition.eager(),
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "numpy"},
)
def attention_maps(
    context: AssetExecutionContext, platform: PlatformResource, config: AttentionSettings
) -> MaterializeResult:
    """A_t in [0, 1]: keyframes scored by degree-sized patches, carried within scenes."""
    scorer = build_scorer(config, platform)
    procedure = AttentionConfig(keyframe_stride=config.keyframe_stride, max_long_side=config.max_long_side)
    return materialize_each_video(context, lambda video_id: attention_for_video(platform, video_id, scorer, procedure))


def attention_for_video(platform: PlatformResource, video_id: str, scorer, procedure: AttentionConfig) -> dict:
    layout = platform.layout
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    started = time.perf_counter()
    maps = compute_attention_maps(catalog.probe.path, catalog.scene_start_frames, scorer, procedure)
    seconds = time.perf_counter() - started
    path = save_attention_maps(layout.artifact_dir("attention_maps", video_id) / ATTENTION_FILE, maps)
    trained = maps.scorer_metadata.get("trained")
    return {
        "scorer_id": maps.scorer_id,
        "scorer": MetadataValue.json(maps.scorer_metadata),
        "weights": MetadataValue.text(
            "none (weight-free proxy)" if trained is None else ("trained" if trained else "RANDOM tiny test model, not trained")
        ),
        "frames": maps.frame_count,
        "keyframes": len(maps.keyframe_indices),
        "frames_per_second": round(maps.frame_count / seconds, 1),
        "bytes": path.stat().st_size,
        "procedure": MetadataValue.json(maps.config),
        "path": MetadataValue.path(str(path)),
    }
