"""``raw/annotations.csv`` as the records of the file, so an edit changes only the rows it means to.

:func:`read_annotations` gives the pipeline validated rows; a writer needs more: the exact text
of every record (unreadable ones included), so what it does not replace stays byte-for-byte.
:func:`read_annotation_file` splits the file into records (a quoted newline stays inside its
record; bytes that are not UTF-8 are carried through unchanged), parses each one with the
pipeline's own row rules, and notes why a record could not be read (line, reason).

Two writers build on it, both atomic (temporary file + rename) and serialised by a file lock
(``raw/.annotations.csv.lock``), so two writers never interleave and nothing half-written
replaces the file:

- :func:`apply_scene_edits` (``align-annotate``'s Save) replaces the scene-level ``box`` and
  ``absent`` rows of the scenes it is given, and keeps everything else: clicks, frame-level
  rows, other scenes and videos, unreadable rows, extra columns, the header, a byte-order mark
  and the line endings. A scene changed in the file since the page read it is refused.
- :func:`replace_video_rows` (:func:`~align_core.inputs.annotations.write_annotations`)
  replaces all rows of some videos and keeps every other record as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from align_core.inputs.annotations import (
    ANNOTATION_COLUMNS,
    AnnotationRow,
    parse_annotation_row,
)
from align_core.inputs.csv_rows import COLUMN_ALIASES, RowCells, RowProblem, canonical_columns
from align_core.inputs.ids import validate_video_id
from align_core.io.atomic import atomic_write_bytes

__all__ = [
    "AnnotationFile",
    "AnnotationFileError",
    "AnnotationRecord",
    "SceneEdit",
    "StaleSceneError",
    "apply_scene_edits",
    "read_annotation_file",
    "replace_video_rows",
]

BOM = b"\xef\xbb\xbf"
#: Kinds the page edits; every other kind (clicks) is kept as it is.
SCENE_KINDS = ("box", "absent")
LOCK_TIMEOUT_S = 30.0


class AnnotationFileError(ValueError):
    """The file cannot be edited safely (a file-level problem, or a column the new rows need)."""


class StaleSceneError(AnnotationFileError):
    """A scene's rows changed in the file after the editor read them."""


@dataclass(frozen=True)
class AnnotationRecord:
    """One record of the file: its exact text, and its row or why it could not be read."""

    line: int  # first line of the record (header = line 1)
    text: str  # exactly as in the file, line ending included (non-UTF-8 bytes surrogate-escaped)
    row: AnnotationRow | None = None
    problems: tuple[RowProblem, ...] = ()
    video_id: str | None = None  # the record's video as far as it could be read
    cells: tuple[str, ...] = ()  # by the file's columns (for readable rows)

    @property
    def scene_key(self) -> tuple[str, int] | None:
        """``(video, scene)`` for a readable scene-level box or absent row (what the page edits)."""
        row = self.row
        if row is None or row.kind not in SCENE_KINDS or row.scene is None or row.frame is not None:
            return None
        return row.video_id, row.scene


@dataclass
class AnnotationFile:
    """The records of ``annotations.csv`` plus what a writer needs to add rows in the file's own form."""

    path: Path
    exists: bool = False
    header_text: str = ""
    columns: list[str] = field(default_factory=list)  # canonical names, in file order
    records: list[AnnotationRecord] = field(default_factory=list)
    file_problems: list[RowProblem] = field(default_factory=list)
    newline: str = "\n"
    bom: bool = False

    def row_problems(self) -> list[RowProblem]:
        """Every unreadable record's problems, in file order."""
        return [problem for record in self.records for problem in record.problems]

    def scene_records(self, video_id: str, scene: int) -> list[AnnotationRecord]:
        return [r for r in self.records if r.scene_key == (video_id, scene)]

    def version(self, video_id: str, scene: int) -> str:
        """A fingerprint of the scene's editable rows: an editor sends it back to prove it saw them."""
        text = "".join(r.text for r in self.scene_records(video_id, scene))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass(frozen=True)
class SceneEdit:
    """New scene-level rows (``box`` / ``absent``; none = clear) for one scene of one video."""

    video_id: str
    scene: int
    rows: tuple[AnnotationRow, ...] = ()
    version: str | None = None  # the scene's version when the editor read it (None: not checked)


# -- reading --------------------------------------------------------------------------------------
def _physical_records(text: str) -> Iterable[tuple[int, str, list[str]]]:
    """``(first line, exact text, cells)`` per CSV record; a quoted newline stays in its record."""
    lines = list(io.StringIO(text, newline=""))
    reader = csv.reader(iter(lines))
    consumed = 0
    for cells in reader:
        yield consumed + 1, "".join(lines[consumed : reader.line_num]), cells
        consumed = reader.line_num


def _header_problems(columns: list[str]) -> list[RowProblem]:
    problems = [
        RowProblem(1, f"column {name!r} appears twice (counting 'video id'/'scene' as aliases); keep one")
        for name in sorted({c for c in columns if columns.count(c) > 1})
    ]
    if "video_id" not in columns:
        problems.append(RowProblem(1, f"missing column 'video_id' (or 'video id'); found {columns}"))
    if "scene_number" not in columns and "frame" not in columns:
        problems.append(RowProblem(1, "needs a 'scene_number' (or 'scene') or a 'frame' column (or both)"))
    return problems


def _parse_record(
    path: Path, columns: list[str], file_columns: dict[str, str], line: int, text: str, cells: list[str]
) -> AnnotationRecord:
    if not cells:  # a blank line: kept, never a row
        return AnnotationRecord(line, text)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        cut = next(i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff")
        reason = f"not UTF-8 at character {cut} of the line; re-export the file as UTF-8"
        return AnnotationRecord(line, text, problems=(RowProblem(line, reason),))
    if len(cells) > len(columns):
        reason = f"has {len(cells)} cells, the header has {len(columns)} columns"
        return AnnotationRecord(line, text, problems=(RowProblem(line, reason),))
    record = dict(zip(columns, cells + [""] * (len(columns) - len(cells)), strict=True))
    row_cells = RowCells(record, line, file_columns=file_columns)
    row = parse_annotation_row(row_cells, path)
    if row is None:
        return AnnotationRecord(line, text, problems=tuple(row_cells.problems), video_id=row_cells.video_id)
    return AnnotationRecord(line, text, row=row, video_id=row.video_id, cells=tuple(record.values()))


def read_annotation_file(path: str | Path) -> AnnotationFile:
    """The file's records (each parsed, or its problems); a missing file is an empty one."""
    path = Path(path)
    if not path.exists():
        return AnnotationFile(path, header_text=",".join(ANNOTATION_COLUMNS) + "\n", columns=_canonical())
    data = path.read_bytes()
    bom = data.startswith(BOM)
    text = data[len(BOM) :].decode("utf-8", "surrogateescape") if bom else data.decode("utf-8", "surrogateescape")
    records = list(_physical_records(text))
    if not records:
        problem = RowProblem(1, "file is empty: expected a header row")
        return AnnotationFile(path, exists=True, bom=bom, file_problems=[problem])
    _, header_text, header = records[0]
    in_file = [name.strip() for name in header]
    columns = canonical_columns(in_file, COLUMN_ALIASES)
    found = AnnotationFile(path, True, header_text, columns, bom=bom, newline=_newline(header_text))
    found.file_problems = _header_problems(columns)
    if any("\udc80" <= ch <= "\udcff" for ch in header_text):
        found.file_problems.append(RowProblem(1, "the header is not UTF-8; re-export the file as UTF-8"))
    file_columns = dict(zip(columns, in_file, strict=True))
    for line, record_text, cells in records[1:]:
        if found.file_problems:
            found.records.append(AnnotationRecord(line, record_text))
        else:
            found.records.append(_parse_record(path, columns, file_columns, line, record_text, cells))
    return found


def _canonical() -> list[str]:
    return canonical_columns(list(ANNOTATION_COLUMNS), COLUMN_ALIASES)


def _newline(header_text: str) -> str:
    for ending in ("\r\n", "\n", "\r"):
        if header_text.endswith(ending):
            return ending
    return "\n"


# -- writing --------------------------------------------------------------------------------------
def _render_rows(
    found: AnnotationFile, rows: Sequence[AnnotationRow], replaced: Sequence[AnnotationRecord] = ()
) -> str:
    """New rows in the file's own columns and line endings; a value with no column is refused.

    Columns this project does not know (a lab's ``notes``) are not the editor's: the n-th new row
    keeps them from the n-th row it replaces.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=found.newline)
    for index, row in enumerate(rows):
        values = dict(zip(found.columns, replaced[index].cells, strict=True)) if index < len(replaced) else {}
        values.update(zip(_canonical(), row.to_csv_cells(), strict=True))
        if "kind" not in found.columns:
            values.pop("kind")  # box (x, y, w, h given) and absent (none given) are the defaults
        missing = [name for name, value in values.items() if value != "" and name not in found.columns]
        if missing:
            raise AnnotationFileError(
                f"{found.path}: has no {' or '.join(repr(m) for m in missing)} column for the new row of video "
                f"{row.video_id}; add the column to the header (line 1) and save again"
            )
        writer.writerow([values.get(name, "") for name in found.columns])
    return buffer.getvalue()


def _joined(parts: list[str], found: AnnotationFile) -> bytes:
    """The file's bytes: pieces joined, each ended by a line break before anything follows it."""
    out: list[str] = []
    for part in parts:
        if out and part and not out[-1].endswith(("\n", "\r")):
            out[-1] += found.newline
        if part:
            out.append(part)
    body = "".join(out).encode("utf-8", "surrogateescape")
    return (BOM if found.bom else b"") + body


def _locked(path: Path) -> FileLock:
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=LOCK_TIMEOUT_S)


def _refuse_file_problems(found: AnnotationFile) -> None:
    if found.file_problems:
        shown = "; ".join(str(p) for p in found.file_problems)
        raise AnnotationFileError(f"{found.path}: cannot be edited until it is fixed: {shown}")


def _check_versions(found: AnnotationFile, edits: Sequence[SceneEdit]) -> None:
    for edit in edits:
        if edit.version is not None and edit.version != found.version(edit.video_id, edit.scene):
            raise StaleSceneError(
                f"{found.path}: video {edit.video_id} scene {edit.scene} changed in the file after the page "
                "read it; reload the page (nothing was saved)"
            )


def apply_scene_edits(path: str | Path, edits: Sequence[SceneEdit]) -> Path:
    """Replace the scene-level box/absent rows of the edited scenes; every other byte stays.

    New rows take the place of the scene's first old row (or go to the end of the file).
    Raises :class:`AnnotationFileError` (nothing written) for a file-level problem, and
    :class:`StaleSceneError` when an edited scene changed since its ``version`` was read.
    """
    path = Path(path)
    by_scene = {(validate_video_id(e.video_id), e.scene): e for e in edits}
    try:
        with _locked(path):
            found = read_annotation_file(path)
            _refuse_file_problems(found)
            _check_versions(found, edits)
            parts, placed = [found.header_text], set()
            for record in found.records:
                key = record.scene_key
                if key not in by_scene:
                    parts.append(record.text)
                elif key not in placed:
                    parts.append(_render_rows(found, by_scene[key].rows, found.scene_records(*key)))
                    placed.add(key)
            parts += [_render_rows(found, e.rows) for key, e in by_scene.items() if key not in placed]
            return atomic_write_bytes(path, _joined(parts, found))
    except Timeout as exc:
        raise AnnotationFileError(f"{path}: another program has been saving it for {LOCK_TIMEOUT_S:g} s") from exc


def replace_video_rows(path: str | Path, rows: Iterable[AnnotationRow], replace_videos: Iterable[str] = ()) -> Path:
    """Every record of the videos in ``replace_videos`` (and in ``rows``) replaced by ``rows``; the rest kept."""
    path = Path(path)
    rows = list(rows)
    replaced = {validate_video_id(v) for v in replace_videos} | {r.video_id for r in rows}
    try:
        with _locked(path):
            found = read_annotation_file(path)
            _refuse_file_problems(found)
            parts = [found.header_text] + [r.text for r in found.records if r.video_id not in replaced]
            return atomic_write_bytes(path, _joined([*parts, _render_rows(found, rows)], found))
    except Timeout as exc:
        raise AnnotationFileError(f"{path}: another program has been saving it for {LOCK_TIMEOUT_S:g} s") from exc
