"""Scenes to frame ranges: by the given times and the video's real fps, or by cut detection.

A scene ``[start_time, end_time)`` covers the frames whose centre time ``(i + 0.5) / fps`` lies
inside it, i.e. ``start_frame = round(start_time * fps)`` and ``end_frame = round(end_time *
fps)`` (exclusive). Nothing is shifted to make the scenes fit: a scene outside the video is an
error, and gaps and overlaps larger than half a frame are reported as issues with their size.

Videos with no rows in ``alignment_score.csv`` get scenes from PySceneDetect's content detector
(HSV-histogram/edge change between frames; the standard tool for hard cuts in edited video),
recorded with ``scene_source = 'detected'``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

__all__ = [
    "SceneIssue",
    "SceneMapping",
    "detect_scenes",
    "map_scenes_to_frames",
]

IssueKind = Literal["outside_video", "gap", "overlap", "uncovered_start", "uncovered_end", "empty_scene"]

#: Issue kinds that make a scene table unusable for frame-accurate work.
FATAL_ISSUES: frozenset[str] = frozenset({"outside_video", "overlap", "empty_scene"})


@dataclass(frozen=True)
class SceneIssue:
    kind: IssueKind
    scene_number: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SceneMapping:
    """Scene rows with ``start_frame``/``end_frame`` added, and what did not fit."""

    scenes: pd.DataFrame
    source: Literal["given", "detected"]
    issues: list[SceneIssue] = field(default_factory=list)

    @property
    def fatal_issues(self) -> list[SceneIssue]:
        return [issue for issue in self.issues if issue.kind in FATAL_ISSUES]

    def frame_ranges(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.scenes["start_frame"], self.scenes["end_frame"], strict=True)]

    def scene_start_frames(self) -> list[int]:
        return [int(v) for v in self.scenes["start_frame"]]


def map_scenes_to_frames(
    scenes: pd.DataFrame, fps: float, frame_count: int, *, tolerance_frames: float = 0.5
) -> SceneMapping:
    """Map given scenes (``scene_number``, ``start_time``, ``end_time``) to frame ranges.

    ``tolerance_frames`` absorbs the rounding of times written with two decimals: boundaries
    within half a frame of each other or of the video's ends are consistent.
    """
    if scenes.empty:
        raise ValueError("no scenes to map")
    table = scenes.sort_values("scene_number").reset_index(drop=True).copy()
    duration = frame_count / fps
    slack = tolerance_frames / fps
    issues: list[SceneIssue] = []
    starts, ends = [], []
    for row in table.itertuples(index=False):
        number = int(row.scene_number)
        start_frame = int(round(row.start_time * fps))
        end_frame = int(round(row.end_time * fps))
        if row.start_time >= duration - slack or row.end_time > duration + slack:
            issues.append(
                SceneIssue(
                    "outside_video",
                    number,
                    f"scene {number} spans {row.start_time:.3f}-{row.end_time:.3f} s but the video lasts "
                    f"{duration:.3f} s ({frame_count} frames at {fps:.3f} fps)",
                )
            )
        start_frame = min(max(start_frame, 0), frame_count)
        end_frame = min(max(end_frame, 0), frame_count)
        if end_frame <= start_frame:
            issues.append(
                SceneIssue(
                    "empty_scene",
                    number,
                    f"scene {number} ({row.start_time:.3f}-{row.end_time:.3f} s) holds no frame centre",
                )
            )
        starts.append(start_frame)
        ends.append(end_frame)
    table["start_frame"] = starts
    table["end_frame"] = ends
    first = table.iloc[0]
    if first.start_time > slack:
        issues.append(
            SceneIssue("uncovered_start", int(first.scene_number), f"no scene covers 0-{first.start_time:.3f} s")
        )
    for previous, current in zip(
        table.iloc[:-1].itertuples(index=False), table.iloc[1:].itertuples(index=False), strict=True
    ):
        delta = current.start_time - previous.end_time
        if delta > slack:
            issues.append(
                SceneIssue(
                    "gap",
                    int(current.scene_number),
                    f"gap of {delta:.3f} s ({delta * fps:.1f} frames) between scenes {previous.scene_number} and {current.scene_number}",
                )
            )
        elif delta < -slack:
            issues.append(
                SceneIssue(
                    "overlap",
                    int(current.scene_number),
                    f"scenes {previous.scene_number} and {current.scene_number} overlap by {-delta:.3f} s ({-delta * fps:.1f} frames)",
                )
            )
    last = table.iloc[-1]
    if duration - last.end_time > slack:
        issues.append(
            SceneIssue("uncovered_end", int(last.scene_number), f"no scene covers {last.end_time:.3f}-{duration:.3f} s")
        )
    return SceneMapping(table, "given", issues)


def detect_scenes(
    video_path: str | Path, fps: float, frame_count: int, *, threshold: float = 27.0, min_scene_len: int = 8
) -> SceneMapping:
    """Detect hard cuts with PySceneDetect's ContentDetector; one scene if there is no cut."""
    from scenedetect import ContentDetector, detect

    cuts = detect(str(video_path), ContentDetector(threshold=threshold, min_scene_len=min_scene_len))
    boundaries = sorted({0, *(int(start.frame_num) for start, _ in cuts), frame_count})
    boundaries = [b for b in boundaries if 0 <= b <= frame_count]
    rows = []
    for number, (start_frame, end_frame) in enumerate(zip(boundaries[:-1], boundaries[1:], strict=True), start=1):
        rows.append(
            {
                "scene_number": number,
                "start_time": start_frame / fps,
                "end_time": end_frame / fps,
                "start_frame": start_frame,
                "end_frame": end_frame,
            }
        )
    return SceneMapping(pd.DataFrame(rows), "detected", [])
