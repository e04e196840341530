"""Product annotations a lab writes by hand (or with ``align-annotate``): boxes, clicks, mask PNGs.

They let the ``annotated`` segmenter find the product without model weights. Two inputs live
beside the other raw inputs:

``raw/annotations.csv`` (one row per box, click or "absent" mark; every cell read as text)::

    video_id,scene_number,frame,kind,x,y,w,h,label
    7301,1,,box,120,200,64,150,perfume bottle
    7301,2,,box,40,310,70,160,
    7301,,57,positive,95,402,,,
    7301,,57,negative,150,380,,,
    7301,3,,absent,,,,,

Column names as in ``protect.csv``: ``video_id`` and ``scene_number`` are the canonical spelling;
the older ``video id`` and ``scene`` are read too (``align-annotate`` still writes them, so the
files it writes stay as they were).

- ``video_id`` (required): the partition key (file stem of the video).
- ``scene_number`` and/or ``frame``: ``scene_number`` is the 1-based scene number of the video
  catalog (the row then annotates the scene's FIRST frame); ``frame`` is a 0-based frame index
  (it must lie in that scene when both are given). One of them is required.
- ``kind`` (optional, default ``box``, or ``absent`` when x, y, w, h are all empty):
  ``box`` needs ``x, y, w, h`` (pixels of the video frame: top-left corner, width, height);
  ``positive`` / ``negative`` are clicks (``x, y`` only) on product / not-product pixels;
  ``absent`` says the product is not in that frame (its mask is empty there).
- ``label`` (optional): free text, e.g. which product; kept in the lineage.

``raw/annotation_masks/<video id>/scene_<n>.png`` or ``frame_<t>.png``: a mask drawn in any
paint program, the size of the video frame, non-zero pixels = product. A mask PNG replaces the
box/click segmentation of that frame.

Several boxes on one frame are several pieces (or copies) of the product; their masks are
joined. Problems are reported per row with the file line (header = line 1) and attributed to
their video, so one video's bad row fails only that video's masks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from align_core.inputs.csv_rows import (
    COLUMN_ALIASES,
    CsvValidationError,
    RowCells,
    RowProblem,
    canonical_columns,
    read_text_table,
)
from align_core.inputs.ids import validate_video_id
from align_core.io.layout import DataLayout

__all__ = [
    "AnnotationError",
    "AnnotationRow",
    "AnnotationTable",
    "FrameAnnotation",
    "annotation_masks_dir",
    "annotations_digest",
    "annotations_path",
    "has_annotations",
    "mask_inputs",
    "parse_annotation_row",
    "read_annotations",
    "resolve_annotations",
    "write_annotations",
]

ANNOTATIONS_FILE = "annotations.csv"
MASKS_FOLDER = "annotation_masks"
#: The header :func:`write_annotations` writes: the older spelling, which every reader accepts.
ANNOTATION_COLUMNS: tuple[str, ...] = ("video id", "scene", "frame", "kind", "x", "y", "w", "h", "label")
KINDS: tuple[str, ...] = ("box", "positive", "negative", "absent")
MASK_NAME = re.compile(r"^(scene|frame)_(\d+)\.png$")


def annotations_path(layout: DataLayout) -> Path:
    """``raw/annotations.csv``."""
    return layout.raw_dir / ANNOTATIONS_FILE


def annotation_masks_dir(layout: DataLayout, video_id: str) -> Path:
    """``raw/annotation_masks/<video id>/`` (mask PNGs per scene or frame)."""
    return layout.raw_dir / MASKS_FOLDER / validate_video_id(video_id)


@dataclass(frozen=True)
class AnnotationRow:
    """One validated CSV row (coordinates in video pixels)."""

    line: int
    video_id: str
    kind: str
    scene: int | None = None
    frame: int | None = None
    x: float | None = None
    y: float | None = None
    w: float | None = None
    h: float | None = None
    label: str = ""

    def to_csv_cells(self) -> list[str]:
        def cell(value: float | int | None) -> str:
            if value is None:
                return ""
            return str(int(value)) if float(value).is_integer() else f"{value:g}"

        return [
            self.video_id,
            cell(self.scene),
            cell(self.frame),
            self.kind,
            cell(self.x),
            cell(self.y),
            cell(self.w),
            cell(self.h),
            self.label,
        ]


@dataclass
class AnnotationTable:
    """Rows of ``annotations.csv`` by video, and the problems of rows that could not be read."""

    path: Path
    rows: dict[str, list[AnnotationRow]] = field(default_factory=dict)
    problems: dict[str | None, list[RowProblem]] = field(default_factory=dict)

    @property
    def video_ids(self) -> list[str]:
        return sorted(self.rows)

    def rows_for(self, video_id: str) -> list[AnnotationRow]:
        """This video's rows; raises :class:`CsvValidationError` naming its bad rows (others' do not count)."""
        bad = self.problems.get(video_id, []) + self.problems.get(None, [])
        if bad:
            raise CsvValidationError(self.path, bad)
        return list(self.rows.get(video_id, []))


def read_annotations(path: str | Path) -> AnnotationTable:
    """Read and validate ``annotations.csv`` (every cell as text; see the module docstring)."""
    path = Path(path)
    frame = read_text_table(path, ("video_id",), aliases=COLUMN_ALIASES)
    if "scene_number" not in frame.columns and "frame" not in frame.columns:
        raise CsvValidationError(
            path, [RowProblem(1, "needs a 'scene_number' (or 'scene') or a 'frame' column (or both)")]
        )
    table = AnnotationTable(path)
    for record in frame.to_dict("records"):
        cells = RowCells(record, int(record["_line"]), file_columns=frame.attrs["file_columns"])
        row = parse_annotation_row(cells, path)
        if row is None:
            table.problems.setdefault(cells.video_id, []).extend(cells.problems)
        else:
            table.rows.setdefault(row.video_id, []).append(row)
    return table


def parse_annotation_row(cells: RowCells, path: Path) -> AnnotationRow | None:
    """One row of ``path`` (cells by canonical column), or None with its problems noted in ``cells``."""
    video_id = cells.required_id("video_id", where=f"{path.name} line {cells.line}")
    scene, index = cells.whole_number("scene_number", low=1), cells.whole_number("frame", low=0)
    x, y, w, h = (cells.number(c, message="must be a number of pixels") for c in ("x", "y", "w", "h"))
    kind = cells.text("kind").lower() or ("absent" if x is y is w is h is None else "box")
    if kind not in KINDS:
        cells.problem(f"unknown kind; use one of {', '.join(KINDS)}", "kind", kind)
    if not cells.text("scene_number") and not cells.text("frame"):
        cells.problem("needs a scene number or a frame index", "scene_number", "")
    if kind == "box":
        _check_box(cells, x, y, w, h)
    elif kind in ("positive", "negative") and (x is None or y is None):
        cells.problem(f"a {kind} click needs x and y", "x", "")
    if cells.problems:
        return None
    assert video_id is not None
    return AnnotationRow(cells.line, video_id, kind, scene, index, x, y, w, h, cells.text("label"))


def _check_box(cells: RowCells, x: float | None, y: float | None, w: float | None, h: float | None) -> None:
    """A box needs all four numbers and a positive size."""
    for column, value in (("x", x), ("y", y), ("w", w), ("h", h)):
        if value is None and not cells.text(column):  # a cell that is not a number was reported already
            cells.problem("a box needs x, y, w and h", column, "")
    if w is not None and w <= 0 or h is not None and h <= 0:
        cells.problem(f"box width and height must be > 0 (w={w}, h={h})", "w")


def write_annotations(path: str | Path, rows: Iterable[AnnotationRow], *, replace_videos: Iterable[str] = ()) -> Path:
    """Write ``rows`` into ``annotations.csv`` atomically; every record of other videos stays as it is.

    Rows of the videos in ``replace_videos`` (and of every video in ``rows``) are replaced whole;
    other videos' rows, unreadable ones included, are kept byte-for-byte
    (:func:`align_core.inputs.annotation_file.replace_video_rows`).
    """
    from align_core.inputs.annotation_file import replace_video_rows  # it builds on this module

    return replace_video_rows(path, rows, replace_videos)


# -- resolved per frame ---------------------------------------------------------------------------
@dataclass
class FrameAnnotation:
    """Everything annotated on one frame, clipped to the frame and checked against the scenes."""

    frame: int
    scene_index: int  # 0-based index into the scene ranges
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h
    positives: list[tuple[int, int]] = field(default_factory=list)
    negatives: list[tuple[int, int]] = field(default_factory=list)
    absent: bool = False
    mask: np.ndarray | None = field(default=None, repr=False)  # bool (H, W) from a mask PNG
    mask_file: str | None = None
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def record(self) -> dict:
        """JSON-able summary (no pixels) for lineage and the diagnostics table."""
        out = asdict(self)
        out.pop("mask")
        return out


class AnnotationError(ValueError):
    """Annotations that do not fit the video (frame outside, box off-frame, mask of the wrong size)."""


def resolve_annotations(
    video_id: str,
    rows: Sequence[AnnotationRow],
    scene_ranges: Sequence[tuple[int, int]],
    width: int,
    height: int,
    *,
    csv_path: str | Path = ANNOTATIONS_FILE,
    masks_dir: str | Path | None = None,
) -> dict[int, FrameAnnotation]:
    """Group a video's rows (and mask PNGs) by the frame they annotate, validated against the video."""
    resolver = _FrameResolver(video_id, scene_ranges, width, height)
    for row in rows:
        resolver.add_row(row, f"{Path(csv_path).name} line {row.line} (video {video_id})")
    if masks_dir is not None and Path(masks_dir).is_dir():
        for png in sorted(Path(masks_dir).iterdir()):
            resolver.add_mask_png(png)
    resolver.check_frames()
    if resolver.problems:
        raise AnnotationError(
            f"annotations of video {video_id} do not fit it:\n  - " + "\n  - ".join(resolver.problems)
        )
    return dict(sorted(resolver.frames.items()))


class _FrameResolver:
    """Collects a video's annotations per frame and every way they do not fit the video."""

    def __init__(self, video_id: str, scene_ranges: Sequence[tuple[int, int]], width: int, height: int):
        self.video_id = video_id
        self.scene_ranges = scene_ranges
        self.width = width
        self.height = height
        self.frame_count = int(scene_ranges[-1][1]) if scene_ranges else 0
        self.frames: dict[int, FrameAnnotation] = {}
        self.problems: list[str] = []

    def _scene_of(self, index: int) -> int | None:
        for i, (start, stop) in enumerate(self.scene_ranges):
            if start <= index < stop:
                return i
        return None

    def target(self, scene: int | None, index: int | None, where: str) -> FrameAnnotation | None:
        """The frame a scene number and/or frame index names, or None with the reason noted."""
        scenes = self.scene_ranges
        if scene is not None and not 1 <= scene <= len(scenes):
            self.problems.append(
                f"{where}: scene {scene} does not exist (video {self.video_id} has {len(scenes)} scenes)"
            )
            return None
        if index is None:
            assert scene is not None
            index = int(scenes[scene - 1][0])
        count = self.frame_count
        if not 0 <= index < count:
            self.problems.append(f"{where}: frame {index} is outside the video ({count} frames, 0-{count - 1})")
            return None
        found = self._scene_of(index)
        if found is None:
            self.problems.append(f"{where}: frame {index} lies in no scene (a gap between scenes)")
            return None
        if scene is not None and found != scene - 1:
            start, stop = scenes[scene - 1]
            self.problems.append(f"{where}: frame {index} is not in scene {scene} (frames {start}-{stop - 1})")
            return None
        return self.frames.setdefault(index, FrameAnnotation(frame=index, scene_index=found))

    def add_row(self, row: AnnotationRow, where: str) -> None:
        """A CSV row's box, click or absent mark on its frame (clipped to the frame)."""
        annotation = self.target(row.scene, row.frame, where)
        if annotation is None:
            return
        annotation.lines.append(row.line)
        if row.label:
            annotation.labels.append(row.label)
        if row.kind == "absent":
            annotation.absent = True
        elif row.kind == "box":
            self._add_box(annotation, row, where)
        else:
            self._add_click(annotation, row, where)

    def _add_box(self, annotation: FrameAnnotation, row: AnnotationRow, where: str) -> None:
        width, height = self.width, self.height
        x0, y0 = max(0.0, row.x), max(0.0, row.y)
        x1, y1 = min(float(width), row.x + row.w), min(float(height), row.y + row.h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            self.problems.append(
                f"{where}: box x={row.x:g} y={row.y:g} w={row.w:g} h={row.h:g} lies outside the "
                f"{width}x{height} frame (or is under 2 pixels wide inside it)"
            )
            return
        annotation.boxes.append((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))))

    def _add_click(self, annotation: FrameAnnotation, row: AnnotationRow, where: str) -> None:
        if not (0 <= row.x < self.width and 0 <= row.y < self.height):
            self.problems.append(
                f"{where}: {row.kind} click ({row.x:g}, {row.y:g}) is outside the {self.width}x{self.height} frame"
            )
            return
        point = (int(row.x), int(row.y))
        (annotation.positives if row.kind == "positive" else annotation.negatives).append(point)

    def add_mask_png(self, png: Path) -> None:
        """A mask PNG (``scene_<n>.png`` or ``frame_<t>.png``) as its frame's mask."""
        match = MASK_NAME.match(png.name)
        if match is None:
            if not png.name.startswith("."):
                self.problems.append(f"{png}: mask PNGs are named scene_<n>.png or frame_<t>.png")
            return
        number = int(match.group(2))
        by_scene = match.group(1) == "scene"
        annotation = self.target(number if by_scene else None, None if by_scene else number, str(png))
        if annotation is None:
            return
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if image is None:
            self.problems.append(f"{png}: cannot be read as an image")
            return
        if image.shape[:2] != (self.height, self.width):
            self.problems.append(
                f"{png}: is {image.shape[1]}x{image.shape[0]}, the video is {self.width}x{self.height}"
            )
            return
        if image.ndim == 3:
            image = image[..., :3].max(axis=-1) if image.shape[2] in (3, 4) else image[..., 0]
        annotation.mask = image > 0
        annotation.mask_file = str(png)

    def check_frames(self) -> None:
        """A frame is either absent or shows the product (a box, a positive click or a mask)."""
        for annotation in self.frames.values():
            where = f"video {self.video_id} frame {annotation.frame} (lines {annotation.lines})"
            shown = annotation.boxes or annotation.positives or annotation.mask is not None
            if annotation.absent and shown:
                self.problems.append(f"{where}: marked absent but also has a box, a click or a mask")
            elif not annotation.absent and not shown:
                self.problems.append(f"{where}: only negative clicks; add a box or a positive click")


def annotations_digest(annotations: dict[int, FrameAnnotation]) -> str:
    """sha256 over the resolved annotations (and mask pixels): what 'which annotations' means."""
    digest = hashlib.sha256()
    for index, annotation in sorted(annotations.items()):
        digest.update(json.dumps(annotation.record(), sort_keys=True).encode())
        if annotation.mask is not None:
            digest.update(np.packbits(annotation.mask).tobytes())
        digest.update(str(index).encode())
    return digest.hexdigest()


def has_annotations(layout: DataLayout, video_id: str) -> bool:
    """Whether the annotations CSV or a mask PNG folder mentions ``video_id`` (cheap, no validation)."""
    folder = annotation_masks_dir(layout, video_id)
    if folder.is_dir() and any(MASK_NAME.match(p.name) for p in folder.iterdir()):
        return True
    path = annotations_path(layout)
    if not path.is_file():
        return False
    try:
        reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        header = canonical_columns(next(reader, []), COLUMN_ALIASES)
        column = header.index("video_id")
    except (OSError, UnicodeDecodeError, ValueError):
        return True  # unreadable or malformed: let the segmenter report it with line numbers
    return any(len(row) > column and row[column].strip() == video_id for row in reader)


def mask_inputs(layout: DataLayout, video_id: str) -> str | None:
    """Which mask inputs a video has: ``provided`` (npz), ``annotated`` (CSV rows or PNGs), both, or None."""
    found = [
        name
        for name, present in (
            ("provided", layout.provided_mask_path(video_id).is_file()),
            ("annotated", has_annotations(layout, video_id)),
        )
        if present
    ]
    return "+".join(found) or None
