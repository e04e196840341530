"""Read and validate the two research CSVs, keeping ids as strings and naming every bad row.

``alignment_score.csv``: ``video id, Scene Number, attention_proportion, start_time, end_time,
CTR_mean, CVR_mean, Clicks_mean, Conversion_mean, Remain_mean, contrast, brightness, industry``.
``keywords.csv``: ``_id, keyword_list[0]``.

Every cell is read as text (19-digit ids overflow float64; a spreadsheet that turned them into
``7.22E+18`` has destroyed them, which is reported, not guessed back). Problems are collected
per row with the file line number and attributed to their video, so one bad row fails that
video's catalog while other videos go on. File-level problems (undecodable bytes, missing
columns) raise :class:`CsvValidationError` at once.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from align_core.inputs.ids import InvalidVideoIdError, validate_video_id

__all__ = [
    "ALIGNMENT_COLUMNS",
    "AlignmentScores",
    "CsvValidationError",
    "KeywordTable",
    "RowProblem",
    "csv_problems",
    "format_csv_problems",
    "read_alignment_scores",
    "read_keywords",
    "read_text_table",
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


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong with one row: ``line`` is the 1-based line in the file (header is 1)."""

    line: int
    message: str
    column: str | None = None
    value: str | None = None
    video_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.column is not None:
            where += f", column '{self.column}'"
        if self.value is not None:
            where += f", value {self.value!r}"
        return f"{where}: {self.message}"


class CsvValidationError(ValueError):
    """A CSV (or some of its rows) failed validation; ``problems`` lists every bad row."""

    def __init__(self, path: str | Path, problems: Iterable[RowProblem | str], *, limit: int = 25):
        self.path = Path(path)
        self.problems = [p if isinstance(p, RowProblem) else RowProblem(0, p) for p in problems]
        shown = "\n".join(f"  - {p}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.path}: {len(self.problems)} problem(s)\n{shown}{suffix}")


def _decode_strict(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problems = []
        for number, raw_line in enumerate(data.split(b"\n"), start=1):
            try:
                raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                snippet = raw_line[max(0, exc.start - 10) : exc.end + 10]
                problems.append(
                    RowProblem(number, f"not UTF-8 at byte {exc.start} of the line ({snippet!r}); re-export as UTF-8")
                )
        raise CsvValidationError(path, problems) from None


def read_text_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file does not exist")
    text = _decode_strict(path)
    if not text.strip():
        raise CsvValidationError(path, [RowProblem(1, "file is empty: expected a header row")])
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise CsvValidationError(path, [RowProblem(0, f"not parseable as CSV ({exc})")]) from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CsvValidationError(
            path,
            [RowProblem(1, f"missing column(s) {missing}; found {list(frame.columns)}")],
        )
    frame = frame.copy()
    frame.insert(0, "_line", range(2, len(frame) + 2))
    return frame


def _parse_number(value: str) -> float | None:
    value = value.strip()
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return math.nan


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
    path = Path(path)
    frame = read_text_table(path, KEYWORD_COLUMNS)
    keywords: dict[str, str] = {}
    problems: list[RowProblem] = []
    seen_line: dict[str, int] = {}
    for line, raw_id, keyword in zip(frame["_line"], frame["_id"], frame["keyword_list[0]"], strict=True):
        try:
            video_id = validate_video_id(raw_id)
        except InvalidVideoIdError as exc:
            problems.append(RowProblem(line, str(exc), "_id", raw_id))
            continue
        if video_id in seen_line:
            problems.append(
                RowProblem(line, f"duplicate id (first seen on line {seen_line[video_id]})", "_id", raw_id, video_id)
            )
            continue
        seen_line[video_id] = line
        keywords[video_id] = keyword
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
    path = Path(path)
    frame = read_text_table(path, ALIGNMENT_COLUMNS)
    problems: list[RowProblem] = []
    records: list[dict[str, object]] = []
    seen_scene: dict[tuple[str, int], int] = {}
    for row in frame.to_dict("records"):
        line = int(row["_line"])
        raw_id = row["video id"]
        try:
            video_id = validate_video_id(raw_id)
        except InvalidVideoIdError as exc:
            problems.append(RowProblem(line, str(exc), "video id", raw_id))
            continue
        row_problems: list[RowProblem] = []
        record: dict[str, object] = {"video_id": video_id}
        scene_text = row["Scene Number"].strip()
        scene_value = _parse_number(scene_text)
        scene_number = (
            int(scene_value) if scene_value is not None and scene_value.is_integer() and scene_value >= 1 else -1
        )
        if scene_number < 1:
            row_problems.append(
                RowProblem(line, "scene number must be a positive integer", "Scene Number", scene_text, video_id)
            )
        record["scene_number"] = scene_number
        for column, (low, high, required) in _NUMERIC_RANGES.items():
            value = _parse_number(row[column])
            if value is None:
                if required:
                    row_problems.append(RowProblem(line, "is empty (required)", column, row[column], video_id))
                record[ALIGNMENT_RENAME[column]] = math.nan
                continue
            if math.isnan(value) or math.isinf(value):
                row_problems.append(RowProblem(line, "is not a finite number", column, row[column], video_id))
            elif (low is not None and value < low) or (high is not None and value > high):
                bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
                row_problems.append(RowProblem(line, f"is outside {bounds}", column, row[column], video_id))
            record[ALIGNMENT_RENAME[column]] = value
        record["industry"] = row["industry"].strip() or None
        start, end = record["start_time"], record["end_time"]
        if isinstance(start, float) and isinstance(end, float) and not (math.isnan(start) or math.isnan(end)):
            if end < start:
                row_problems.append(
                    RowProblem(
                        line, f"end_time {end} is before start_time {start}", "end_time", row["end_time"], video_id
                    )
                )
            elif end == start:
                row_problems.append(
                    RowProblem(
                        line,
                        f"zero-length scene (start_time = end_time = {start})",
                        "end_time",
                        row["end_time"],
                        video_id,
                    )
                )
        key = (video_id, scene_number)
        if scene_number >= 1:
            if key in seen_scene:
                row_problems.append(
                    RowProblem(
                        line,
                        f"duplicate scene {scene_number} for this video (first on line {seen_scene[key]})",
                        "Scene Number",
                        scene_text,
                        video_id,
                    )
                )
            else:
                seen_scene[key] = line
        record["source_line"] = line
        if row_problems:
            problems.extend(row_problems)
        else:
            records.append(record)
    columns = ["video_id", *[ALIGNMENT_RENAME[c] for c in ALIGNMENT_COLUMNS[1:]], "source_line"]
    table = pd.DataFrame.from_records(records, columns=columns)
    table["video_id"] = table["video_id"].astype(str)
    table["scene_number"] = table["scene_number"].astype("int64")
    return AlignmentScores(path, table, problems)


# -- every problem of the input CSVs, for the user -----------------------------------------------
CSV_PROBLEM_COLUMNS = ["file", "line", "column", "value", "problem", "video_id"]


def csv_problems(*paths: str | Path) -> pd.DataFrame:
    """Every problem in the input CSVs (``keywords.csv``, ``alignment_score.csv``), one row each.

    Rows whose id is invalid (e.g. ``7.22E+18``) belong to no video, so no partition ever
    reports them; this table does, for the CLI's console, the sensor's log, the catalog's
    metadata and the ``csv_problems`` warehouse table. A file that cannot be read at all is one
    row with line 0. Missing files are skipped.
    """
    readers = {"keywords.csv": read_keywords, "alignment_score.csv": read_alignment_scores}
    rows: list[dict[str, object]] = []
    for path in map(Path, paths):
        if not path.exists():
            continue
        reader = readers.get(
            path.name, read_alignment_scores if "video id" in path.read_text(errors="replace")[:200] else read_keywords
        )
        try:
            problems = reader(path).problems
        except CsvValidationError as exc:
            problems = exc.problems
        except ValueError as exc:
            problems = [RowProblem(0, str(exc))]
        rows.extend(
            {
                "file": str(path),
                "line": p.line,
                "column": p.column,
                "value": p.value,
                "problem": p.message,
                "video_id": p.video_id,
            }
            for p in problems
        )
    return pd.DataFrame(rows, columns=CSV_PROBLEM_COLUMNS).astype(
        {
            "file": "string",
            "line": "int64",
            "column": "string",
            "value": "string",
            "problem": "string",
            "video_id": "string",
        }
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
