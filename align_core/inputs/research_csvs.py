"""Read and validate the two research CSVs, keeping ids as strings and naming every bad row.

``alignment_score.csv``: ``video id, Scene Number, attention_proportion, start_time, end_time,
CTR_mean, CVR_mean, Clicks_mean, Conversion_mean, Remain_mean, contrast, brightness, industry``.
``keywords.csv``: ``_id, keyword_list[0]``.

Every cell is read as text by :mod:`align_core.inputs.csv_rows` (19-digit ids overflow float64; a
spreadsheet that turned them into ``7.22E+18`` has destroyed them, which is reported, not guessed
back). Problems are collected
per row with the file line number and attributed to their video, so one bad row fails that
video's catalog while other videos go on; a row with bytes that are not UTF-8 is one such bad
row (unreadable, left out, its video blocked). File-level problems (no header, missing or
duplicate columns) raise :class:`~align_core.inputs.csv_rows.CsvFileError` at once: they block
every video, and :func:`csv_problems` / :func:`describe_csv_problems` say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from align_core.inputs.csv_rows import (
    CsvFileError,
    CsvValidationError,
    RowCells,
    RowProblem,
    parse_number,
    read_text_table,
)

__all__ = [
    "ALIGNMENT_COLUMNS",
    "AlignmentScores",
    "KeywordTable",
    "csv_problems",
    "describe_csv_problems",
    "format_csv_problems",
    "read_alignment_scores",
    "read_keywords",
]

ALIGNMENT_COLUMNS: tuple[str, ...] = (
    "video id",
    "Scene Number",
    "attention_proportion",
    "start_time",
    "end_time",
    "CTR_mean",
    "CVR_mean",
    "Clicks_mean",
    "Conversion_mean",
    "Remain_mean",
    "contrast",
    "brightness",
    "industry",
)
KEYWORD_COLUMNS: tuple[str, ...] = ("_id", "keyword_list[0]")

#: Warehouse (snake_case) names for the alignment CSV's columns.
ALIGNMENT_RENAME: dict[str, str] = {
    "video id": "video_id",
    "Scene Number": "scene_number",
    "attention_proportion": "attention_proportion",
    "start_time": "start_time",
    "end_time": "end_time",
    "CTR_mean": "ctr_mean",
    "CVR_mean": "cvr_mean",
    "Clicks_mean": "clicks_mean",
    "Conversion_mean": "conversion_mean",
    "Remain_mean": "remain_mean",
    "contrast": "contrast",
    "brightness": "brightness",
    "industry": "industry",
}
#: Columns that must be numbers, with the closed range each must fall in (None: unbounded).
_NUMERIC_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    # column: (low, high, required)
    "attention_proportion": (0.0, 1.0, True),
    "start_time": (0.0, None, True),
    "end_time": (0.0, None, True),
    "CTR_mean": (0.0, 1.0, False),
    "CVR_mean": (0.0, 1.0, False),
    "Clicks_mean": (0.0, None, False),
    "Conversion_mean": (0.0, None, False),
    "Remain_mean": (0.0, None, False),
    "contrast": (None, None, False),
    "brightness": (None, None, False),
}


# -- keywords.csv -----------------------------------------------------------------------------
@dataclass
class KeywordTable:
    """``video_id -> raw keyword`` (empty strings kept: screening decides what they mean)."""

    path: Path
    keywords: dict[str, str]
    problems: list[RowProblem] = field(default_factory=list)

    def keyword_for(self, video_id: str) -> str | None:
        """The raw keyword, or None if the video has no row; raises if its rows were bad."""
        bad = [p for p in self.problems if p.video_id == video_id]
        if bad:
            raise CsvValidationError(self.path, bad)
        return self.keywords.get(video_id)

    def raise_for_problems(self) -> KeywordTable:
        if self.problems:
            raise CsvValidationError(self.path, self.problems)
        return self


def read_keywords(path: str | Path) -> KeywordTable:
    """Read ``keywords.csv``: one keyword per valid, first-seen id; every bad row is a problem."""
    path = Path(path)
    frame = read_text_table(path, KEYWORD_COLUMNS, unreadable_rows=True)
    keywords: dict[str, str] = {}
    problems: list[RowProblem] = []
    seen_line: dict[str, int] = {}
    for record in frame.to_dict("records"):
        cells = RowCells(record, int(record["_line"]))
        video_id = cells.required_id("_id")
        if cells.unreadable():
            problems.extend(cells.problems)
            continue
        if video_id is not None and video_id in seen_line:
            cells.problem(f"duplicate id (first seen on line {seen_line[video_id]})", "_id", cells.raw("_id"))
        if cells.problems:
            problems.extend(cells.problems)
            continue
        seen_line[video_id] = cells.line
        keywords[video_id] = cells.raw("keyword_list[0]")
    return KeywordTable(path, keywords, problems)


# -- alignment_score.csv ----------------------------------------------------------------------
@dataclass
class AlignmentScores:
    """Valid scene rows (snake_case columns, ids as strings) plus every problem found."""

    path: Path
    table: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)

    def problems_for(self, video_id: str) -> list[RowProblem]:
        return [p for p in self.problems if p.video_id == video_id]

    def scenes_for(self, video_id: str) -> pd.DataFrame:
        """The video's scene rows sorted by scene number; raises if any of its rows were bad."""
        bad = self.problems_for(video_id)
        if bad:
            raise CsvValidationError(self.path, bad)
        rows = self.table[self.table["video_id"] == video_id]
        return rows.sort_values("scene_number").reset_index(drop=True)

    @property
    def video_ids(self) -> list[str]:
        ids = set(self.table["video_id"]) | {p.video_id for p in self.problems if p.video_id}
        return sorted(ids)

    def raise_for_problems(self) -> AlignmentScores:
        if self.problems:
            raise CsvValidationError(self.path, self.problems)
        return self


def read_alignment_scores(path: str | Path) -> AlignmentScores:
    """Read ``alignment_score.csv``: valid scene rows in a table, every bad row as a problem."""
    path = Path(path)
    frame = read_text_table(path, ALIGNMENT_COLUMNS, unreadable_rows=True)
    problems: list[RowProblem] = []
    records: list[dict[str, object]] = []
    seen_scene: dict[tuple[str, int], int] = {}
    for row in frame.to_dict("records"):
        cells = RowCells(row, int(row["_line"]))
        id_missing = cells.required_id("video id") is None
        if cells.unreadable() or id_missing:
            problems.extend(cells.problems)
            continue
        record = _scene_record(cells)
        _check_duplicate_scene(cells, record["scene_number"], seen_scene)
        if cells.problems:
            problems.extend(cells.problems)
        else:
            records.append(record)
    return AlignmentScores(path, _scene_table(records), problems)


def _scene_record(cells: RowCells) -> dict[str, object]:
    """One row in warehouse names (NaN for empty numbers, -1 for a bad scene number); notes its problems."""
    scene_number = cells.whole_number(
        "Scene Number", low=1, required=True, message="scene number must be a positive integer"
    )
    record: dict[str, object] = {
        "video_id": cells.video_id,
        "scene_number": -1 if scene_number is None else scene_number,
    }
    for column, (low, high, required) in _NUMERIC_RANGES.items():
        record[ALIGNMENT_RENAME[column]] = _bounded_number(cells, column, low, high, required)
    record["industry"] = cells.text("industry") or None
    _check_times(cells, record["start_time"], record["end_time"])
    record["source_line"] = cells.line
    return record


def _bounded_number(cells: RowCells, column: str, low: float | None, high: float | None, required: bool) -> float:
    """The cell as a number (NaN when empty); notes an empty required cell, a non-finite or out-of-range value."""
    raw = cells.raw(column)
    value = parse_number(raw)
    if value is None:
        if required:
            cells.problem("is empty (required)", column, raw)
        return math.nan
    if math.isnan(value) or math.isinf(value):
        cells.problem("is not a finite number", column, raw)
    elif (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        cells.problem(f"is outside {bounds}", column, raw)
    return value


def _check_times(cells: RowCells, start: float, end: float) -> None:
    """A scene must end after it starts."""
    if math.isnan(start) or math.isnan(end):
        return
    if end < start:
        cells.problem(f"end_time {end} is before start_time {start}", "end_time", cells.raw("end_time"))
    elif end == start:
        cells.problem(f"zero-length scene (start_time = end_time = {start})", "end_time", cells.raw("end_time"))


def _check_duplicate_scene(cells: RowCells, scene_number: int, seen_scene: dict[tuple[str, int], int]) -> None:
    """A video's scene number may appear once; the first line is remembered."""
    if scene_number < 1:
        return
    key = (cells.video_id, scene_number)
    if key in seen_scene:
        cells.problem(
            f"duplicate scene {scene_number} for this video (first on line {seen_scene[key]})",
            "Scene Number",
            cells.text("Scene Number"),
        )
    else:
        seen_scene[key] = cells.line


def _scene_table(records: list[dict[str, object]]) -> pd.DataFrame:
    columns = ["video_id", *[ALIGNMENT_RENAME[c] for c in ALIGNMENT_COLUMNS[1:]], "source_line"]
    table = pd.DataFrame.from_records(records, columns=columns)
    table["video_id"] = table["video_id"].astype(str)
    table["scene_number"] = table["scene_number"].astype("int64")
    return table


# -- every problem of the input CSVs, for the user -----------------------------------------------
CSV_PROBLEM_COLUMNS = ["file", "line", "column", "value", "problem", "video_id", "scope"]

#: ``scope`` of a problem: one row (its video, or no video when the id is bad) or the whole file.
ROW_SCOPE, FILE_SCOPE = "row", "file"


def _file_problems(path: Path) -> tuple[list[RowProblem], str]:
    """(the file's problems, their scope): a file-level failure is one scope for all of them."""
    readers = {"keywords.csv": read_keywords, "alignment_score.csv": read_alignment_scores}
    reader = readers.get(
        path.name, read_alignment_scores if "video id" in path.read_text(errors="replace")[:200] else read_keywords
    )
    try:
        return reader(path).problems, ROW_SCOPE
    except CsvValidationError as exc:
        return exc.problems, FILE_SCOPE if isinstance(exc, CsvFileError) else ROW_SCOPE
    except ValueError as exc:
        return [RowProblem(0, str(exc))], FILE_SCOPE


def csv_problems(*paths: str | Path) -> pd.DataFrame:
    """Every problem in the input CSVs (``keywords.csv``, ``alignment_score.csv``), one row each.

    Rows whose id is invalid (e.g. ``7.22E+18``) belong to no video, so no partition ever
    reports them; this table does, for the CLI's console, the sensor's log, the catalog's
    metadata and the ``csv_problems`` warehouse table. ``scope`` is ``file`` for a problem of
    the whole file (no header, missing column): it blocks every video, not one row. Missing
    files are skipped.
    """
    rows: list[dict[str, object]] = []
    for path in map(Path, paths):
        if not path.exists():
            continue
        problems, scope = _file_problems(path)
        rows.extend(
            {
                "file": str(path),
                "line": p.line,
                "column": p.column,
                "value": p.value,
                "problem": p.message,
                "video_id": p.video_id,
                "scope": scope,
            }
            for p in problems
        )
    return pd.DataFrame(rows, columns=CSV_PROBLEM_COLUMNS).astype(
        {column: "int64" if column == "line" else "string" for column in CSV_PROBLEM_COLUMNS}
    )


def format_csv_problems(problems: pd.DataFrame, limit: int = 20) -> list[str]:
    """Readable lines: ``keywords.csv line 3, column '_id', value '7.22E+18': <problem>``."""
    lines = []
    for row in problems.head(limit).itertuples(index=False):
        where = f"{Path(row.file).name} line {row.line}"
        if not pd.isna(row.column):
            where += f", column '{row.column}'"
        if not pd.isna(row.value):
            where += f", value {row.value!r}"
        owner = f" (video {row.video_id})" if not pd.isna(row.video_id) else ""
        lines.append(f"{where}{owner}: {row.problem}")
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more (see the csv_problems table)")
    return lines


def describe_csv_problems(problems: pd.DataFrame, video_ids: list[str]) -> list[str]:
    """Console lines for what no single partition reports, each with its reach.

    A file-level problem blocks every video in ``video_ids`` (named, the first ten); a row whose
    id is invalid belongs to no video and is left out. Rows that belong to a video are reported
    by that video's own run and are not repeated here.
    """
    lines: list[str] = []
    whole = problems[problems["scope"] == FILE_SCOPE]
    shown = ", ".join(video_ids[:10]) + (f" and {len(video_ids) - 10} more" if len(video_ids) > 10 else "")
    for file, group in whole.groupby("file", sort=True):
        lines.append(
            f"{Path(str(file)).name} cannot be used at all (a problem of the whole file, not of one row): every"
            f" video's catalog fails until it is fixed ({len(video_ids)} video(s): {shown or 'none yet'}):"
        )
        lines.extend(f"  - {line}" for line in format_csv_problems(group))
    orphans = problems[(problems["scope"] != FILE_SCOPE) & problems["video_id"].isna()]
    if len(orphans):
        n_rows = len(orphans[["file", "line"]].drop_duplicates())
        lines.append(f"{n_rows} input CSV row(s) belong to no video and are left out:")
        lines.extend(f"  - {line}" for line in format_csv_problems(orphans))
    return lines
