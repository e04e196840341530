"""What ``align-annotate``'s page shows of ``raw/annotations.csv``, and the only edits it may save.

The page edits the scene-level ``box`` and ``absent`` rows of the videos it serves, with their
labels: nothing else. It shows, read-only, what else annotates a scene (clicks, frame-level
rows, mask PNGs) and every row of the file that could not be read (line and reason); those are
kept byte-for-byte by :func:`~align_core.inputs.annotation_file.apply_scene_edits`. The page
sends only the scenes the user changed, each with the version of the rows it showed, so a scene
changed in the file meanwhile is refused rather than overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align_core.inputs.annotation_file import AnnotationFile, AnnotationRecord, SceneEdit
from align_core.inputs.annotations import MASK_NAME, AnnotationRow
from align_core.inputs.csv_rows import RowProblem

__all__ = [
    "VideoScenes",
    "edits_from_page",
    "page_listing",
]

MAX_LABEL = 500


@dataclass
class VideoScenes:
    """A served video: its file, pixel grid and scenes (frame ranges; scene n = ``scenes[n - 1]``)."""

    video_id: str
    path: Path
    width: int
    height: int
    scenes: list[tuple[int, int]]


def _problem(problem: RowProblem) -> dict[str, Any]:
    return {"line": problem.line, "video_id": problem.video_id, "reason": str(problem)}


def _describe(record: AnnotationRecord) -> str:
    row = record.row
    assert row is not None
    where = f"scene {row.scene}" if row.frame is None else f"frame {row.frame}"
    coords = ", ".join(f"{k}={getattr(row, k):g}" for k in ("x", "y", "w", "h") if getattr(row, k) is not None)
    label = f" '{row.label}'" if row.label else ""
    return f"line {record.line}: {row.kind} on {where}" + (f" ({coords})" if coords else "") + label


def _in_scene(row: AnnotationRow, scene: int, start: int, stop: int) -> bool:
    return row.scene == scene if row.frame is None else start <= row.frame < stop


def _scene_entry(found: AnnotationFile, video: VideoScenes, scene: int, masks: list[str]) -> dict[str, Any]:
    """One scene: its editable rows (boxes, absent, label, version) and what else annotates it (kept)."""
    start, stop = video.scenes[scene - 1]
    editable = [r.row for r in found.scene_records(video.video_id, scene) if r.row is not None]
    boxes = [{"x": r.x, "y": r.y, "w": r.w, "h": r.h, "label": r.label} for r in editable if r.kind == "box"]
    others = [
        _describe(r)
        for r in found.records
        if r.row is not None
        and r.row.video_id == video.video_id
        and r.scene_key is None
        and _in_scene(r.row, scene, start, stop)
    ]
    for name in masks:
        kind, number = MASK_NAME.match(name).groups()  # type: ignore[union-attr]  # names were matched
        if (kind == "scene" and int(number) == scene) or (kind == "frame" and start <= int(number) < stop):
            others.append(f"mask PNG {name} (replaces the box segmentation of its frame)")
    return {
        "scene": scene,
        "start": start,
        "stop": stop,
        "boxes": boxes,
        "absent": any(r.kind == "absent" for r in editable),
        "label": next((r.label for r in editable if r.label), ""),
        "version": found.version(video.video_id, scene),
        "kept": others,
    }


def page_listing(found: AnnotationFile, videos: list[VideoScenes], masks: dict[str, list[str]]) -> dict[str, Any]:
    """Everything the page shows: the videos' scenes with their rows, and every unreadable row."""
    return {
        "csv": str(found.path),
        "editable": not found.file_problems,
        "problems": [_problem(p) for p in found.file_problems + found.row_problems()],
        "videos": [
            {
                "video_id": video.video_id,
                "width": video.width,
                "height": video.height,
                "scenes": [
                    _scene_entry(found, video, n, masks.get(video.video_id, []))
                    for n in range(1, len(video.scenes) + 1)
                ],
            }
            for video in videos
        ],
    }


# -- what the page sends back ---------------------------------------------------------------------
def _label(video_id: str, scene: int, entry: dict[str, Any]) -> str:
    label = entry.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise ValueError(f"video {video_id} scene {scene}: label must be text of at most {MAX_LABEL} characters")
    return label.strip()


def _box_row(video: VideoScenes, scene: int, entry: dict[str, Any]) -> AnnotationRow:
    try:
        x, y, w, h = (float(entry[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"video {video.video_id} scene {scene}: a box needs numbers x, y, w and h") from None
    if not (w >= 2 and h >= 2 and x >= 0 and y >= 0 and x + w <= video.width + 0.5 and y + h <= video.height + 0.5):
        raise ValueError(
            f"video {video.video_id} scene {scene}: box {x, y, w, h} is not inside {video.width}x{video.height}"
        )
    label = _label(video.video_id, scene, entry)
    return AnnotationRow(0, video.video_id, "box", scene, None, round(x), round(y), round(w), round(h), label)


def _scene_number(video: VideoScenes, entry: Any) -> int:
    if not isinstance(entry, dict):
        raise ValueError(f"video {video.video_id}: each entry is an object with a 'scene'")
    scene = entry.get("scene")
    if isinstance(scene, bool) or not isinstance(scene, int) or not 1 <= scene <= len(video.scenes):
        raise ValueError(f"video {video.video_id} has no scene {scene!r}")
    return scene


def _scene_edits(video: VideoScenes, entries: Any) -> list[SceneEdit]:
    """One edit per scene named in ``entries``: its boxes, an absent mark, or nothing (cleared)."""
    if not isinstance(entries, list):
        raise ValueError(f"video {video.video_id}: expected a list of scene entries")
    rows: dict[int, list[AnnotationRow]] = {}
    versions: dict[int, str | None] = {}
    for entry in entries:
        scene = _scene_number(video, entry)
        scene_rows = rows.setdefault(scene, [])
        version = entry.get("version")
        if versions.setdefault(scene, version) != version:
            raise ValueError(f"video {video.video_id} scene {scene}: entries carry different versions")
        if entry.get("absent"):
            scene_rows.append(
                AnnotationRow(0, video.video_id, "absent", scene, label=_label(video.video_id, scene, entry))
            )
        elif any(k in entry for k in ("x", "y", "w", "h")):
            scene_rows.append(_box_row(video, scene, entry))
    for scene, scene_rows in rows.items():
        if len(scene_rows) > 1 and any(r.kind == "absent" for r in scene_rows):
            raise ValueError(f"video {video.video_id} scene {scene}: marked absent and given a box at once")
    return [SceneEdit(video.video_id, n, tuple(r), versions[n]) for n, r in rows.items()]


def edits_from_page(videos: dict[str, VideoScenes], payload: Any) -> list[SceneEdit]:
    """``{video id: [{scene, x, y, w, h, label, version} | {scene, absent, ...} | {scene, version}]}``.

    Only the scenes named are edited; a scene named without a box or an absent mark is cleared.
    Raises ``ValueError`` naming the video and scene for anything else.
    """
    if not isinstance(payload, dict):
        raise ValueError("expected {video id: [{scene, x, y, w, h, label, version} or {scene, absent, version}]}")
    edits: list[SceneEdit] = []
    for video_id, entries in payload.items():
        video = videos.get(video_id)
        if video is None:
            raise ValueError(f"video {video_id!r} is not served here")
        edits.extend(_scene_edits(video, entries))
    return edits
