"""The video catalog: everything later stages need to know about one video, in one record.

Probe (fps, frames, duration, size, audio, sha256), scenes mapped to frame ranges (given or
detected), and the keyword verdict. Written as ``catalog.json`` + ``scenes.parquet`` + a
thumbnail strip (the first frame of each scene) so the Dagster UI and notebooks can show it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from align_core.inputs.ids import validate_video_id
from align_core.inputs.keywords import KeywordVerdict, screen_keyword
from align_core.inputs.research_csvs import AlignmentScores, KeywordTable
from align_core.inputs.scenes import SceneIssue, SceneMapping, detect_scenes, map_scenes_to_frames
from align_core.io.atomic import atomic_path, atomic_write_text
from align_core.io.layout import ARTIFACT_FILES
from align_core.io.video_io import VideoProbe, iter_frames, probe_video
from align_core.io.visuals import save_png

__all__ = [
    "SCENE_COLUMNS",
    "VideoCatalog",
    "build_catalog",
    "load_catalog",
    "save_catalog",
]

CATALOG_FILE = ARTIFACT_FILES["video_catalog"]["catalog"]
SCENES_FILE = ARTIFACT_FILES["video_catalog"]["scenes"]
THUMBNAIL_FILE = ARTIFACT_FILES["video_catalog"]["thumbnail"]

#: Column order of the warehouse ``scenes`` table.
SCENE_COLUMNS: tuple[str, ...] = (
    "video_id",
    "scene_number",
    "start_time",
    "end_time",
    "start_frame",
    "end_frame",
    "n_frames",
    "attention_proportion",
    "ctr_mean",
    "cvr_mean",
    "clicks_mean",
    "conversion_mean",
    "remain_mean",
    "contrast",
    "brightness",
    "industry",
    "scene_source",
)


class CatalogError(ValueError):
    """The video's inputs do not fit together (scenes outside the video, overlaps, ...)."""


@dataclass
class VideoCatalog:
    video_id: str
    probe: VideoProbe
    scenes: pd.DataFrame  # SCENE_COLUMNS
    scene_source: str
    scene_issues: list[SceneIssue]
    keyword: KeywordVerdict
    keyword_in_file: bool
    industry: str | None
    #: Which mask inputs the video has: ``provided``, ``annotated``, ``provided+annotated`` or None.
    mask_source: str | None = None

    @property
    def scene_ranges(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.scenes["start_frame"], self.scenes["end_frame"], strict=True)]

    @property
    def scene_start_frames(self) -> list[int]:
        return [int(v) for v in self.scenes["start_frame"]]

    def video_row(self) -> dict[str, Any]:
        """One row of the warehouse ``videos`` table."""
        probe = self.probe
        return {
            "video_id": self.video_id,
            "file_name": Path(probe.path).name,
            "sha256": probe.sha256,
            "size_bytes": probe.size_bytes,
            "width": probe.width,
            "height": probe.height,
            "fps": probe.fps,
            "frame_count": probe.frame_count,
            "duration_s": probe.duration_s,
            "video_codec": probe.video_codec,
            "has_audio": probe.has_audio,
            "audio_codec": probe.audio_codec,
            "keyword_raw": self.keyword.raw if self.keyword_in_file else None,
            "keyword": self.keyword.keyword,
            "keyword_status": self.keyword.status,
            "keyword_category": self.keyword.category,
            "keyword_reason": self.keyword.reason,
            "industry": self.industry,
            "n_scenes": len(self.scenes),
            "scene_source": self.scene_source,
            "scene_issues": "; ".join(issue.detail for issue in self.scene_issues) or None,
            "mask_source": self.mask_source,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "probe": self.probe.to_dict(),
            "scene_source": self.scene_source,
            "scene_issues": [issue.to_dict() for issue in self.scene_issues],
            "keyword": self.keyword.to_dict(),
            "keyword_in_file": self.keyword_in_file,
            "industry": self.industry,
            "mask_source": self.mask_source,
            "scenes": json.loads(self.scenes.to_json(orient="records")),
        }


def build_catalog(
    video_id: str,
    video_path: str | Path,
    alignment: AlignmentScores | None,
    keywords: KeywordTable | None,
) -> VideoCatalog:
    """Probe the video, map its scenes to frames and screen its keyword.

    Raises :class:`~align_core.io.video_io.VideoError` for unreadable videos,
    :class:`~align_core.inputs.csv_rows.CsvValidationError` for this video's bad CSV rows, and
    :class:`CatalogError` when given scenes cannot be mapped (outside the video, overlapping).
    """
    video_id = validate_video_id(video_id)
    probe = probe_video(video_path)
    given = alignment.scenes_for(video_id) if alignment is not None else pd.DataFrame()
    if len(given):
        mapping: SceneMapping = map_scenes_to_frames(given, probe.fps, probe.frame_count)
        if mapping.fatal_issues:
            details = "; ".join(issue.detail for issue in mapping.fatal_issues)
            lines = ", ".join(str(v) for v in given["source_line"])
            raise CatalogError(
                f"video {video_id}: scenes in {alignment.path} (lines {lines}) do not fit the video: {details}"
            )
    else:
        mapping = detect_scenes(video_path, probe.fps, probe.frame_count)
    scenes = mapping.scenes.copy()
    scenes["video_id"] = video_id
    scenes["n_frames"] = scenes["end_frame"] - scenes["start_frame"]
    scenes["scene_source"] = mapping.source
    for column in SCENE_COLUMNS:
        if column not in scenes.columns:
            scenes[column] = None if column == "industry" else np.nan
    scenes = scenes[list(SCENE_COLUMNS)]
    industries = scenes["industry"].dropna()
    industry = str(industries.mode().iloc[0]) if len(industries) else None
    raw_keyword = keywords.keyword_for(video_id) if keywords is not None else None
    verdict = screen_keyword(raw_keyword)
    if raw_keyword is None:
        verdict = KeywordVerdict(
            "",
            "",
            False,
            "empty",
            f"video has no row in {keywords.path if keywords is not None else 'keywords.csv'}",
        )
    return VideoCatalog(
        video_id=video_id,
        probe=probe,
        scenes=scenes,
        scene_source=mapping.source,
        scene_issues=mapping.issues,
        keyword=verdict,
        keyword_in_file=raw_keyword is not None,
        industry=industry,
    )


def scene_strip(video_path: str | Path, starts: list[int], height: int = 160) -> np.ndarray:
    """The first frame of each scene side by side (RGB), for a thumbnail."""
    wanted = set(starts)
    tiles = []
    for index, frame in enumerate(iter_frames(video_path, 0, max(starts) + 1)):
        if index in wanted:
            scale = height / frame.shape[0]
            tiles.append(cv2.resize(frame, (max(1, int(frame.shape[1] * scale)), height), interpolation=cv2.INTER_AREA))
    gap = np.full((height, 4, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for tile in tiles:
        parts.extend([tile, gap])
    return np.concatenate(parts[:-1], axis=1)


def save_catalog(catalog: VideoCatalog, directory: str | Path) -> dict[str, Path]:
    """Write catalog.json, scenes.parquet and the scene thumbnail strip (each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = catalog.to_json()
    # The video's path is stored relative to this directory, so a data directory that is moved
    # or mounted elsewhere still finds its inputs.
    data["probe"] = {**data["probe"], "path": os.path.relpath(catalog.probe.path, directory.resolve())}
    json_path = atomic_write_text(directory / CATALOG_FILE, json.dumps(data, indent=2, default=str))
    scenes_path = directory / SCENES_FILE
    with atomic_path(scenes_path) as tmp:
        catalog.scenes.to_parquet(tmp, index=False)
    strip = scene_strip(catalog.probe.path, catalog.scene_start_frames)
    thumb_path = save_png(directory / THUMBNAIL_FILE, strip)
    return {"catalog": json_path, "scenes": scenes_path, "thumbnail": thumb_path}


def load_catalog(directory: str | Path) -> VideoCatalog:
    """Read a catalog written by :func:`save_catalog` (no re-probing)."""
    directory = Path(directory)
    path = directory / CATALOG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize video_catalog for this video first")
    data = json.loads(path.read_text())
    scenes = pd.read_parquet(directory / SCENES_FILE)
    scenes["video_id"] = scenes["video_id"].astype(str)
    keyword = data["keyword"]
    verdict = KeywordVerdict(
        raw=keyword["raw"],
        keyword=keyword["keyword"],
        segmentable=keyword["segmentable"],
        category=keyword["category"],
        reason=keyword["reason"],
        notes=tuple(keyword.get("notes", ())),
    )
    probe = dict(data["probe"])
    if not Path(probe["path"]).is_absolute():
        probe["path"] = os.path.normpath(directory.resolve() / probe["path"])
    return VideoCatalog(
        video_id=data["video_id"],
        probe=VideoProbe(**probe),
        scenes=scenes,
        scene_source=data["scene_source"],
        scene_issues=[SceneIssue(**issue) for issue in data["scene_issues"]],
        keyword=verdict,
        keyword_in_file=data["keyword_in_file"],
        industry=data["industry"],
        mask_source=data.get("mask_source"),
    )
