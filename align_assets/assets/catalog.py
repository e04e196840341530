"""Per-video ``video_catalog`` and the warehouse ``videos`` / ``scenes`` tables."""

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_duckdb import DuckDBResource

from align_assets.metadata import check_result, png_markdown, table_markdown
from align_assets.partitions import ONE_VIDEO_PER_RUN, video_partitions
from align_assets.resources import PlatformResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.inputs.research_csvs import format_csv_problems
from align_core.stages.catalog import catalog_checks, run_catalog, write_csv_problems

__all__ = [
    "scenes",
    "video_catalog",
    "videos",
]

CATALOG_CHECKS = [
    AssetCheckSpec(
        "scene_schema", asset="video_catalog", description="Scene table has the warehouse columns and types."
    ),
    AssetCheckSpec(
        "value_ranges", asset="video_catalog", description="fps, frames, times and proportions are in range."
    ),
    AssetCheckSpec(
        "scene_frame_consistency",
        asset="video_catalog",
        description="Scenes tile the video's frames: no overlaps, nothing outside, gaps reported.",
    ),
]


@asset(
    partitions_def=video_partitions,
    group_name="inputs",
    check_specs=CATALOG_CHECKS,
    kinds={"python", "video"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def video_catalog(context: AssetExecutionContext, platform: PlatformResource):
    """Probe the video, map its scenes to frames (given or detected) and screen its keyword."""
    video_id = context.partition_key
    result = run_catalog(platform.layout, video_id)
    catalog, paths = result.catalog, result.paths
    probe, scenes = catalog.probe, catalog.scenes
    orphans = result.orphan_problems  # rows whose id is invalid belong to no partition: every run shows them
    # The video file's hash is the data version: a replaced file makes everything downstream stale.
    yield MaterializeResult(
        data_version=DataVersion(probe.sha256),
        metadata={
            "thumbnail": png_markdown(paths["thumbnail"], alt=f"first frame of each scene of {video_id}"),
            "scenes": table_markdown(
                scenes[
                    [
                        "scene_number",
                        "start_time",
                        "end_time",
                        "start_frame",
                        "end_frame",
                        "attention_proportion",
                        "industry",
                    ]
                ]
            ),
            "keyword": MetadataValue.text(catalog.keyword.keyword or "(empty)"),
            "keyword_verdict": MetadataValue.md(
                f"**{catalog.keyword.status}** ({catalog.keyword.category}): {catalog.keyword.reason}"
                + "".join(f"\n\n- note: {note}" for note in catalog.keyword.notes)
            ),
            "scene_source": catalog.scene_source,
            "mask_source": catalog.mask_source or "none (no provided masks, no annotations)",
            "resolution": f"{probe.width}x{probe.height}",
            "fps": probe.fps,
            "frame_count": probe.frame_count,
            "duration_s": round(probe.duration_s, 3),
            "has_audio": probe.has_audio,
            "industry": catalog.industry or "(none)",
            "video_sha256": probe.sha256,
            "catalog_path": MetadataValue.path(str(paths["catalog"])),
            "csv_problems_without_video": len(orphans),
            "csv_problems_without_video_list": MetadataValue.md("\n".join(f"- {p}" for p in orphans[:30]) or "none"),
        },
    )
    if orphans:
        context.log.warning(
            f"{len(orphans)} input CSV row(s) belong to no video (see the csv_problems table): "
            + "; ".join(str(p) for p in orphans[:5])
        )
    for outcome in catalog_checks(catalog):
        yield check_result(outcome)


@asset(name="csv_problems", group_name="warehouse", kinds={"duckdb"})
def csv_problems_table(platform: PlatformResource, warehouse: DuckDBResource) -> MaterializeResult:
    """Every problem in keywords.csv and alignment_score.csv (file, line, column, value, problem, video_id),
    including rows that belong to no video (e.g. an id a spreadsheet turned into 7.22E+18)."""
    problems = write_csv_problems(platform.layout, warehouse.database)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(problems),
            "without_video": int(problems["video_id"].isna().sum()),
            "problems": MetadataValue.md("\n".join(f"- {line}" for line in format_csv_problems(problems)) or "none"),
        }
    )


videos = collect_table_asset(
    name="videos",
    source_asset="video_catalog",
    file_role="video_row",
    description="One row per video: probe, keyword verdict, industry, scene source (from video_catalog).",
    group_name="warehouse",
    order_by="video_id",
)

scenes = collect_table_asset(
    name="scenes",
    source_asset="video_catalog",
    file_role="scenes",
    description="One row per scene with its frame range and the alignment_score.csv columns.",
    group_name="warehouse",
    order_by="video_id, scene_number",
)
