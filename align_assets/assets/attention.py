"""Per-video ``attention_maps``: A_t by the meaning-map procedure with the ``scorer`` resource."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from align_assets.partitions import CHEAP_BACKFILL, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource, ScorerResource
from align_core.stages.attention import AttentionSettings, run_attention

__all__ = [
    "attention_maps",
]


class AttentionConfig(Config, AttentionSettings):
    """The video driver's knobs; the scorer itself is the ``scorer`` resource."""


@asset(
    partitions_def=video_partitions,
    deps=["video_catalog"],
    group_name="perception",
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "numpy"},
)
def attention_maps(
    context: AssetExecutionContext, platform: PlatformResource, scorer: ScorerResource, config: AttentionConfig
) -> MaterializeResult:
    """A_t in [0, 1]: keyframes scored by degree-sized patches, carried within scenes, plus each frame's
    residual-motion cue (camera motion removed) when the scorer has a motion weight."""
    measure = scorer.measure(platform)

    def one(video_id: str) -> dict:
        result = run_attention(platform.layout, video_id, measure, config)
        maps = result.maps
        trained = maps.scorer_metadata.get("trained")
        return {
            "scorer_id": maps.scorer_id,
            "scorer": MetadataValue.json(maps.scorer_metadata),
            "weights": MetadataValue.text(
                "none (weight-free proxy)"
                if trained is None
                else ("trained" if trained else "RANDOM tiny test model, not trained")
            ),
            "frames": maps.frame_count,
            "keyframes": len(maps.keyframe_indices),
            "motion_weight": maps.motion_weight,
            "frames_with_motion": 0 if maps.motion_maps is None else int(maps.motion_maps.any(axis=(1, 2)).sum()),
            "frames_per_second": round(maps.frame_count / result.seconds, 1),
            "bytes": result.path.stat().st_size,
            "procedure": MetadataValue.json(maps.config),
            "path": MetadataValue.path(str(result.path)),
        }

    return materialize_each_video(context, one)
