"""Input CSVs read one way: every cell as text, one problem type, shared cell parsers.

Every CSV a lab provides (``alignment_score.csv``, ``keywords.csv``, ``annotations.csv``,
``protect.csv``) is read by :func:`read_text_table`: UTF-8 (an optional byte-order mark
is dropped; bytes that are not UTF-8 fail the file, or with ``unreadable_rows`` only their own
rows, see :meth:`RowCells.unreadable`), every cell kept as text (19-digit ids overflow float64), header names stripped,
and a ``_line`` column with each row's line in the file (header = line 1). A bad row becomes a
:class:`RowProblem` (file line, column, value, message, owning video); a reader collects them
and raises :class:`CsvValidationError` for the rows that matter. A problem of the whole file
(no header, a missing column, undecodable bytes) raises :class:`CsvFileError`, whose message says
that every video is blocked by it. :class:`RowCells` parses one
row's cells (whole numbers, numbers, the video id) and notes every bad cell.

Column names: the research CSVs keep their original schema (``video id``, ``Scene Number``,
...). The formats this project designed (``annotations.csv``, ``protect.csv``) spell the id and
the scene ``video_id`` and ``scene_number``; the older spellings ``video id`` and ``scene`` are
accepted in both (:data:`COLUMN_ALIASES`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from align_core.inputs.ids import InvalidVideoIdError, validate_video_id

__all__ = [
    "COLUMN_ALIASES",
    "CsvFileError",
    "CsvValidationError",
    "REPLACED_BYTE",
    "RowCells",
    "RowProblem",
    "canonical_columns",
    "parse_number",
    "read_text_table",
]

#: What an undecodable byte becomes when a reader keeps the other rows (U+FFFD, the replacement character).
REPLACED_BYTE = "\ufffd"

#: Other spellings of the canonical columns of ``annotations.csv`` and ``protect.csv``.
COLUMN_ALIASES: dict[str, str] = {"video id": "video_id", "scene": "scene_number"}


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
        super().__init__(f"{self.path}: {self.headline()}\n{shown}{suffix}")

    def headline(self) -> str:
        return f"{len(self.problems)} problem(s)"


class CsvFileError(CsvValidationError):
    """The whole file cannot be used (no header, missing column, not UTF-8): no video can use it."""

    def headline(self) -> str:
        return (
            f"the whole file cannot be used ({len(self.problems)} file-level problem(s)), so every video"
            " that reads it is blocked until it is fixed"
        )


# -- the table ------------------------------------------------------------------------------------
def _undecodable_lines(data: bytes) -> list[RowProblem]:
    """One problem per line of ``data`` that is not UTF-8, naming the byte and showing it."""
    problems = []
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            snippet = raw_line[max(0, exc.start - 10) : exc.end + 10]
            problems.append(
                RowProblem(number, f"not UTF-8 at byte {exc.start} of the line ({snippet!r}); re-export as UTF-8")
            )
    return problems


def _decode(path: Path, *, unreadable_rows: bool) -> tuple[str, bool]:
    """(the file as text, whether bytes were replaced); not UTF-8 fails the file unless ``unreadable_rows``."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        if not unreadable_rows:
            raise CsvFileError(path, _undecodable_lines(data)) from None
        return data.decode("utf-8", errors="replace"), True


def canonical_columns(header: Sequence[str], aliases: Mapping[str, str]) -> list[str]:
    """Header names stripped, each alias replaced by its canonical name."""
    names = [str(name).strip() for name in header]
    return [aliases.get(name, name) for name in names]


def _rename_columns(path: Path, frame: pd.DataFrame, aliases: Mapping[str, str]) -> pd.DataFrame:
    """Canonical column names; ``frame.attrs['file_columns']`` keeps each one's spelling in the file."""
    in_file = [str(name).strip() for name in frame.columns]
    canonical = canonical_columns(in_file, aliases)
    twice = sorted({name for name in canonical if canonical.count(name) > 1})
    if twice:
        problems = [
            " and ".join(repr(f) for f, c in zip(in_file, canonical, strict=True) if c == name)
            + f" are the same column ({name!r}); keep one"
            for name in twice
        ]
        raise CsvFileError(path, [RowProblem(1, problem) for problem in problems])
    frame.columns = canonical
    frame.attrs["file_columns"] = dict(zip(canonical, in_file, strict=True))
    return frame


def read_text_table(
    path: Path,
    required: tuple[str, ...],
    *,
    aliases: Mapping[str, str] | None = None,
    unreadable_rows: bool = False,
) -> pd.DataFrame:
    """Every cell as text plus ``_line``; raises :class:`CsvFileError` for file-level problems.

    ``aliases`` maps other spellings of a column to its canonical name (``required`` uses the
    canonical names). With ``unreadable_rows``, bytes that are not UTF-8 become
    :data:`REPLACED_BYTE` and ``frame.attrs['replaced_bytes']`` is set, so the reader can report
    those rows (:meth:`RowCells.unreadable`) and keep the others; without it they fail the file.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: file does not exist")
    text, replaced = _decode(path, unreadable_rows=unreadable_rows)
    if not text.strip():
        raise CsvFileError(path, [RowProblem(1, "file is empty: expected a header row")])
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise CsvFileError(path, [RowProblem(0, f"not parseable as CSV ({exc})")]) from exc
    found = list(frame.columns)
    if replaced and any(REPLACED_BYTE in str(name) for name in found):
        raise CsvFileError(path, [p for p in _undecodable_lines(path.read_bytes()) if p.line == 1])
    frame = _rename_columns(path, frame.copy(), aliases or {})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CsvFileError(path, [RowProblem(1, f"missing column(s) {missing}; found {found}")])
    frame.insert(0, "_line", range(2, len(frame) + 2))
    frame.attrs["replaced_bytes"] = replaced
    return frame


# -- cells ----------------------------------------------------------------------------------------
def parse_number(value: str) -> float | None:
    """None for an empty cell, NaN for text that is not a number."""
    value = value.strip()
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return math.nan


class RowCells:
    """One row's cells as text; its parsers note every bad cell as a :class:`RowProblem` of the row."""

    def __init__(
        self,
        record: Mapping[str, object],
        line: int,
        video_id: str | None = None,
        file_columns: Mapping[str, str] | None = None,
    ):
        self.record = record
        self.line = line
        self.video_id = video_id
        self.file_columns = dict(file_columns or {})
        self.problems: list[RowProblem] = []

    def raw(self, column: str) -> str:
        """The cell exactly as in the file ("" when the row or file lacks it)."""
        return str(self.record.get(column, ""))

    def text(self, column: str) -> str:
        """The cell without surrounding blanks."""
        return self.raw(column).strip()

    def problem(self, message: str, column: str | None = None, value: str | None = None) -> None:
        """Note a problem of this row (``column`` canonical; reported as the file spells it)."""
        name = self.file_columns.get(column, column) if column is not None else None
        self.problems.append(RowProblem(self.line, message, name, value, self.video_id))

    def unreadable(self) -> bool:
        """Note (and say) whether the row held bytes that are not UTF-8: the row is then left out.

        Only for a table read with ``unreadable_rows``; the problem names the first such cell and
        belongs to the row's video when its id cell is readable, so only that video is blocked.
        """
        bad = [column for column, value in self.record.items() if REPLACED_BYTE in str(value)]
        if not bad:
            return False
        reach = f"only video {self.video_id} is blocked" if self.video_id else "it belongs to no video"
        self.problem(
            f"not UTF-8 (the undecodable bytes are shown as {REPLACED_BYTE}): the row is unreadable and left out,"
            f" {reach}; re-export the file as UTF-8",
            bad[0],
            self.raw(bad[0]),
        )
        return True

    def required_id(self, column: str, *, where: str = "") -> str | None:
        """The row's video id (also kept as ``video_id`` for later problems), or None with a problem."""
        raw = self.raw(column)
        try:
            self.video_id = validate_video_id(raw, where=where)
        except InvalidVideoIdError as exc:
            self.video_id = None
            self.problem(str(exc), column, raw)
        return self.video_id

    def whole_number(
        self, column: str, *, low: int | None = None, required: bool = False, message: str | None = None
    ) -> int | None:
        """A whole number >= ``low``; None when empty (a problem if ``required``) or bad (a problem)."""
        text = self.text(column)
        value = parse_number(text)
        if value is None and not required:
            return None
        if value is None or not math.isfinite(value) or not value.is_integer() or (low is not None and value < low):
            default = f"must be a whole number >= {low}" if low is not None else "must be a whole number"
            self.problem(message or default, column, text)
            return None
        return int(value)

    def number(self, column: str, *, message: str = "must be a number") -> float | None:
        """A finite number; None when empty, or bad (a problem)."""
        text = self.text(column)
        value = parse_number(text)
        if value is None:
            return None
        if not math.isfinite(value):
            self.problem(message, column, text)
            return None
        return value
