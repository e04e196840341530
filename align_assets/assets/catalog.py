"""Per-video ``video_catalog`` and the warehouse ``videos`` / ``scenes`` tables."""


import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from align_assets.metadata import png_markdown, table_markdown
from align_assets.partitions import ONE_VIDEO_PER_RUN, video_partitions
from align_assets.resources import PlatformResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.annotations import mask_inputs
from align_core.atomic import atomic_path
from align_core.catalog import SCENE_COLUMNS, build_catalog, save_catalog
from align_core.ingest import (
    AlignmentScores,
    KeywordTable,
    csv_problems,
    format_csv_problems,
    read_alignment_scores,
    read_keywords,
)
from align_core.warehouse import write_connection

CATALOG_CHECKS = [
    AssetCheckSpec("scene_schema", asset="video_catalog", description="Scene table has the warehouse columns and types."),
    AssetCheckSpec("value_ranges", asset="video_catalog", description="fps, frames, times and proportions are in range."),
    AssetCheckSpec(
        "scene_frame_consistency", asset="video_catalog",
        description="Scenes tile the video's frames: no overlaps, nothing outside, gaps reported.",
    ),
]


def _optional_inputs(platform: PlatformResource) -> tuple[AlignmentScores | None, KeywordTable | None]:
    layout = platform.layout
    alignment = read_alignment_scores(layout.alignment_csv) if layout.alignment_csv.exists() else None
    keywords = read_keywords(layout.keywords_csv) if layout.keywords_csv.exists() else None
    return alignment, keywords


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
    layout = platform.layout
    alignment, keywords = _optional_inputs(platform)
    catalog = build_catalog(video_id, layout.video_path(video_id), alignment, keywords)
    catalog.mask_source = mask_inputs(layout, video_id)
    out_dir = layout.artifact_dir("video_catalog", video_id)
    paths = save_catalog(catalog, out_dir)
    with atomic_path(out_dir / "video.parquet") as tmp:
        pd.DataFrame([catalog.video_row()]).to_parquet(tmp, index=False)

    probe, scenes = catalog.probe, catalog.scenes
    # Rows whose id is invalid belong to no partition: every catalog run shows them.
    orphans = [p for table in (alignment, keywords) if table is not None for p in table.problems if p.video_id is None]
    # The video file's hash is the data version: a replaced file makes everything downstream stale.
    yield MaterializeResult(
        data_version=DataVersion(probe.sha256),
        metadata={
            "thumbnail": png_markdown(paths["thumbnail"], alt=f"first frame of each scene of {video_id}"),
            "scenes": table_markdown(scenes[["scene_number", "start_time", "end_time", "start_frame", "end_frame",
                                             "attention_proportion", "industry"]]),
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
            "csv_problems_without_video_list": MetadataValue.md(
                "\n".join(f"- {p}" for p in orphans[:30]) or "none"
            ),
        }
    )
    if orphans:
        context.log.warning(f"{len(orphans)} input CSV row(s) belong to no video (see the csv_problems table): "
                            + "; ".join(str(p) for p in orphans[:5]))
    yield from _catalog_checks(catalog)


@asset(name="csv_problems", group_name="warehouse", kinds={"duckdb"})
def csv_problems_table(platform: PlatformResource) -> MaterializeResult:
    """Every problem in keywords.csv and alignment_score.csv (file, line, column, value, problem, video_id),
    including rows that belong to no video (e.g. an id a spreadsheet turned into 7.22E+18)."""
    layout = platform.layout
    problems = csv_problems(layout.keywords_csv, layout.alignment_csv)
    with write_connection(layout.warehouse_path) as con:
        con.execute("BEGIN TRANSACTION")
        con.register("problems_frame", problems)
        con.execute("CREATE OR REPLACE TABLE csv_problems AS SELECT * FROM problems_frame")
        con.unregister("problems_frame")
        con.execute("COMMIT")
    return MaterializeResult(metadata={
        "dagster/row_count": len(problems),
        "without_video": int(problems["video_id"].isna().sum()),
        "problems": MetadataValue.md("\n".join(f"- {line}" for line in format_csv_problems(problems)) or "none"),
    })


def _catalog_checks(catalog) -> list[AssetCheckResult]:
    scenes, probe = catalog.scenes, catalog.probe
    missing = [c for c in SCENE_COLUMNS if c not in scenes.columns]
    id_is_text = scenes["video_id"].map(lambda v: isinstance(v, str)).all() if len(scenes) else True
    schema_ok = not missing and id_is_text and pd.api.types.is_integer_dtype(scenes["start_frame"])
    bad_ranges = []
    if not probe.fps > 0 or probe.frame_count <= 0:
        bad_ranges.append(f"fps={probe.fps}, frames={probe.frame_count}")
    given = scenes["attention_proportion"].dropna()
    if ((given < 0) | (given > 1)).any():
        bad_ranges.append("attention_proportion outside [0, 1]")
    if (scenes["end_time"] <= scenes["start_time"]).any():
        bad_ranges.append("a scene ends before it starts")
    ordered = scenes.sort_values("start_frame")
    overlaps = int((ordered["start_frame"].to_numpy()[1:] < ordered["end_frame"].to_numpy()[:-1]).sum())
    outside = int((scenes["end_frame"] > probe.frame_count).sum())
    covered = int((scenes["end_frame"] - scenes["start_frame"]).clip(lower=0).sum())
    issues = [issue.detail for issue in catalog.scene_issues]
    consistent = overlaps == 0 and outside == 0
    return [
        AssetCheckResult(
            check_name="scene_schema", passed=bool(schema_ok),
            metadata={"missing_columns": str(missing), "video_id_is_text": bool(id_is_text)},
        ),
        AssetCheckResult(check_name="value_ranges", passed=not bad_ranges, metadata={"problems": "; ".join(bad_ranges) or "none"}),
        AssetCheckResult(
            check_name="scene_frame_consistency",
            passed=consistent and not issues,
            severity=AssetCheckSeverity.ERROR if not consistent else AssetCheckSeverity.WARN,
            metadata={
                "frames_in_video": probe.frame_count,
                "frames_covered_by_scenes": covered,
                "overlapping_scene_pairs": overlaps,
                "scenes_past_the_end": outside,
                "issues": "; ".join(issues) or "none",
            },
        ),
    ]


videos = collect_table_asset(
    name="videos",
    source_asset="video_catalog",
    file_name="video.parquet",
    description="One row per video: probe, keyword verdict, industry, scene source (from video_catalog).",
    group_name="warehouse",
    order_by="video_id",
)

scenes = collect_table_asset(
    name="scenes",
    source_asset="video_catalog",
    file_name="scenes.parquet",
    description="One row per scene with its frame range and the alignment_score.csv columns.",
    group_name="warehouse",
    order_by="video_id, scene_number",
)
