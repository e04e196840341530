"""The ``video_catalog`` stage: probe, scenes -> frames, keyword screen; and its data checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from align_core.inputs.annotations import mask_inputs
from align_core.inputs.catalog import SCENE_COLUMNS, VideoCatalog, build_catalog, save_catalog
from align_core.inputs.research_csvs import read_alignment_scores, read_keywords
from align_core.io.atomic import atomic_path
from align_core.io.layout import DataLayout
from align_core.stages import CheckOutcome

__all__ = [
    "catalog_checks",
    "run_catalog",
    "write_csv_problems",
]


@dataclass
class CatalogResult:
    catalog: VideoCatalog
    paths: dict[str, Path]
    #: CSV problems whose row names no valid video id: they belong to no partition, so every catalog run shows them
    orphan_problems: list = field(default_factory=list)


def run_catalog(layout: DataLayout, video_id: str) -> CatalogResult:
    """Catalog one video from its file and the two CSVs (either may be absent)."""
    alignment = read_alignment_scores(layout.alignment_csv) if layout.alignment_csv.exists() else None
    keywords = read_keywords(layout.keywords_csv) if layout.keywords_csv.exists() else None
    catalog = build_catalog(video_id, layout.video_path(video_id), alignment, keywords)
    catalog.mask_source = mask_inputs(layout, video_id)
    paths = save_catalog(catalog, layout.artifact_dir("video_catalog", video_id))
    row_path = layout.artifact("video_catalog", "video_row", video_id)
    with atomic_path(row_path) as tmp:
        pd.DataFrame([catalog.video_row()]).to_parquet(tmp, index=False)
    orphans = [p for table in (alignment, keywords) if table is not None for p in table.problems if p.video_id is None]
    return CatalogResult(catalog, {**paths, "video_row": row_path}, orphans)


def write_csv_problems(layout: DataLayout, database: str | Path) -> pd.DataFrame:
    """Every problem in keywords.csv and alignment_score.csv (file, line, column, value, problem, video_id)
    as the ``csv_problems`` warehouse table, including rows that belong to no video."""
    from align_core.inputs.research_csvs import csv_problems
    from align_core.io.warehouse import replace_table

    problems = csv_problems(layout.keywords_csv, layout.alignment_csv)
    replace_table(database, "csv_problems", problems)
    return problems


def catalog_checks(catalog: VideoCatalog) -> list[CheckOutcome]:
    """Schema, value ranges, and whether the scenes tile the video's frames."""
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
        CheckOutcome(
            "scene_schema", bool(schema_ok), {"missing_columns": str(missing), "video_id_is_text": bool(id_is_text)}
        ),
        CheckOutcome("value_ranges", not bad_ranges, {"problems": "; ".join(bad_ranges) or "none"}),
        CheckOutcome(
            "scene_frame_consistency",
            consistent and not issues,
            {
                "frames_in_video": probe.frame_count,
                "frames_covered_by_scenes": covered,
                "overlapping_scene_pairs": overlaps,
                "scenes_past_the_end": outside,
                "issues": "; ".join(issues) or "none",
            },
            warn_only=consistent,
        ),
    ]
