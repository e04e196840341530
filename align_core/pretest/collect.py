"""Collect a pretest's session files into DuckDB (``pretest_sessions``, ``pretest_cursor``, ``pretest_realism``).

The server appends one JSON line per accepted batch to ``D/pretest/<study_id>/sessions/<session_id>.jsonl``
and fsyncs it before answering, so the files are the truth and the tables are rebuilt from them:

- a study's rows are replaced as a whole in one transaction, so collecting the same files twice
  gives the same rows, and a withdrawn session (its file deleted) loses its rows on the next run;
- a batch_id seen twice in a file (a replayed post) is counted once (the first line wins);
- a last line without its newline that does not parse is the batch a killed server was writing:
  it is skipped with a warning naming the file and line. Any other line that does not parse is
  corruption and fails the collection with the file and line named;
- practice trials are not collected; cursor samples outside the video (x or y outside 0..1) are
  kept with ``in_frame = false``; ``frame_index = floor(media_time_s * fps)`` clipped to the video,
  with :data:`FRAME_TIME_SLACK_S` added first: the page stamps a sample with the displayed frame's
  own presentation time (``requestVideoFrameCallback``'s ``mediaTime``), which Chromium rounds to
  the microsecond, so frame 2 of a 15 fps clip arrives as 0.133333 s and a bare floor puts it on
  frame 1 (a third of all frames at 15, 24 or 29.97 fps).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from align_core.io.layout import DataLayout
from align_core.io.warehouse import transaction, write_connection
from align_core.pretest.store import HEX_ID
from align_core.pretest.study import STUDY_ID, load_study, study_dir

__all__ = [
    "FRAME_TIME_SLACK_S",
    "PRETEST_TABLES",
    "CollectReport",
    "SessionRecords",
    "collect_pretest",
    "collect_study",
    "load_collected_study",
    "pretest_root",
    "read_session_file",
    "session_files",
    "session_files_fingerprint",
    "study_ids",
]

log = logging.getLogger(__name__)

#: Added to a sample's media time before it is floored to a frame: covers the browser's rounding
#: of a frame's presentation time (microseconds) and is far shorter than any frame (4 ms at 240 fps).
FRAME_TIME_SLACK_S = 1e-4

STUDY_KEYS = ("study_id", "experiment_id", "design_sha256", "window_deg", "viewing", "videos", "lists")

PRETEST_TABLES: dict[str, str] = {
    "pretest_sessions": """CREATE TABLE IF NOT EXISTS pretest_sessions (
        study_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, list_index INTEGER, started_at VARCHAR,
        completed BOOLEAN NOT NULL, attention_checks_passed INTEGER NOT NULL,
        attention_checks_shown INTEGER NOT NULL)""",
    "pretest_cursor": """CREATE TABLE IF NOT EXISTS pretest_cursor (
        study_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, video_id VARCHAR NOT NULL,
        variant VARCHAR NOT NULL, trial_index INTEGER, batch_id VARCHAR NOT NULL, sample_index INTEGER NOT NULL,
        media_time_s DOUBLE, frame_index INTEGER, x DOUBLE, y DOUBLE, in_frame BOOLEAN NOT NULL, pointer VARCHAR)""",
    "pretest_realism": """CREATE TABLE IF NOT EXISTS pretest_realism (
        study_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, video_id VARCHAR, variant VARCHAR,
        mode VARCHAR, choice VARCHAR, rating INTEGER, correct BOOLEAN)""",
}
#: Each table's columns and their DuckDB types, read off its DDL (the one place they are written).
COLUMN_TYPES: dict[str, dict[str, str]] = {
    table: dict(line.split()[:2] for line in ddl.split("(", 1)[1].rsplit(")", 1)[0].split(","))
    for table, ddl in PRETEST_TABLES.items()
}
COLUMNS: dict[str, list[str]] = {table: list(types) for table, types in COLUMN_TYPES.items()}


def pretest_root(data_dir: str | os.PathLike[str]) -> Path:
    """``D/pretest``: every study lives below it."""
    return Path(data_dir) / "pretest"


def _study_folder(data_dir: str | os.PathLike[str], study_id: str) -> Path:
    """``D/pretest/<study_id>`` for a valid study id (no id can point outside ``D/pretest``)."""
    return study_dir(DataLayout(Path(data_dir)), study_id)


def study_ids(data_dir: str | os.PathLike[str]) -> list[str]:
    """Every study under ``D/pretest`` that has a ``study.json``."""
    root = pretest_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if STUDY_ID.match(p.name) and (p / "study.json").is_file())


def load_collected_study(data_dir: str | os.PathLike[str], study_id: str) -> dict[str, Any]:
    """The study's ``study.json`` (design hash checked), with the keys the analysis reads (ValueError naming the file)."""
    path = _study_folder(data_dir, study_id) / "study.json"
    study = load_study(path.parent)
    missing = [key for key in STUDY_KEYS if not isinstance(study, dict) or key not in study]
    if missing:
        raise ValueError(f"study file {path}: missing {missing}")
    if study["study_id"] != study_id:
        raise ValueError(f"study file {path}: names study {study['study_id']!r}, not {study_id!r}")
    for video in study["videos"]:
        if not (float(video.get("fps", 0)) > 0 and int(video.get("n_frames", 0)) > 0):
            raise ValueError(f"study file {path}: video {video.get('video_id')!r} needs fps > 0 and n_frames > 0")
    return study


def session_files(data_dir: str | os.PathLike[str], study_id: str) -> list[Path]:
    """The study's session files (``sessions/<32 hex>.jsonl``), sorted; other names are ignored."""
    directory = _study_folder(data_dir, study_id) / "sessions"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.jsonl") if HEX_ID.match(p.stem) and p.is_file())


def session_files_fingerprint(data_dir: str | os.PathLike[str]) -> str:
    """A digest of every study's session files (name, size, mtime): it changes when any file does."""
    digest = hashlib.sha256()
    for study_id in study_ids(data_dir):
        for path in session_files(data_dir, study_id):
            stat = path.stat()
            digest.update(f"{study_id}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass
class SessionRecords:
    """One session file's records, duplicates (by batch_id) removed."""

    session_id: str
    records: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]


def _parse_lines(path: Path, raw: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """(line number, record) of every complete line; a torn last line becomes a warning."""
    lines = raw.split(b"\n")
    torn_last = not raw.endswith(b"\n")
    parsed: list[tuple[int, dict[str, Any]]] = []
    warnings: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if torn_last and number == len(lines):
                warnings.append(f"{path}: line {number} is truncated (a batch cut off mid-write); skipped")
                log.warning(warnings[-1])
                continue
            raise ValueError(f"session file {path}: line {number} is not valid JSON ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise ValueError(f"session file {path}: line {number} is not a record with a 'kind'")
        parsed.append((number, record))
    return parsed, warnings


def read_session_file(path: str | os.PathLike[str]) -> SessionRecords:
    """Read one session file: records in file order, each batch_id once, the session id checked."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"session file {path}: cannot be read ({exc})") from exc
    parsed, warnings = _parse_lines(path, raw)
    result = SessionRecords(session_id=path.stem, warnings=warnings)
    seen: set[str] = set()
    for number, record in parsed:
        if record.get("session_id") != path.stem:
            raise ValueError(
                f"session file {path}: line {number} belongs to session {record.get('session_id')!r}, not {path.stem!r}"
            )
        batch_id = str(record.get("batch_id") or f"line-{number}")
        if batch_id in seen:
            result.duplicates += 1
            continue
        seen.add(batch_id)
        result.records.append(record | {"batch_id": batch_id})
    return result


def _session_row(study_id: str, session: SessionRecords) -> dict[str, Any]:
    start = (session.of_kind("session") or [{}])[0]
    checks = session.of_kind("attention_check")
    list_index = start.get("list_index")
    return {
        "study_id": study_id,
        "session_id": session.session_id,
        "list_index": int(list_index) if isinstance(list_index, int) else None,
        "started_at": start.get("started_at") or start.get("received_at"),
        "completed": bool(session.of_kind("complete")),
        "attention_checks_passed": sum(1 for c in checks if c.get("clicked") is True),
        "attention_checks_shown": len(checks),
    }


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _cursor_rows(study_id: str, session: SessionRecords, videos: Mapping[str, Mapping[str, Any]]) -> list[tuple]:
    rows: list[tuple] = []
    for record in session.of_kind("cursor"):
        if record.get("practice"):
            continue
        video = videos.get(str(record.get("video_id")))
        if video is None:
            session.warnings.append(
                f"session {session.session_id}: batch {record.get('batch_id')} names video "
                f"{record.get('video_id')!r}, not in the study; skipped"
            )
            continue
        fps, last = float(video["fps"]), int(video["n_frames"]) - 1
        samples = record.get("samples") or []
        for index, sample in enumerate(samples):
            values = list(sample) if isinstance(sample, (list, tuple)) else []
            t, x, y = (_finite(v) for v in (values + [None] * 3)[:3])
            frame = min(max(int(math.floor((t + FRAME_TIME_SLACK_S) * fps)), 0), last) if math.isfinite(t) else None
            inside = frame is not None and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0
            rows.append(
                (study_id, session.session_id, video["video_id"], str(record.get("variant")))
                + (record.get("trial_index"), str(record["batch_id"]), index, t, frame, x, y, inside)
                + (record.get("pointer"),)
            )
    return rows


def _realism_rows(study_id: str, session: SessionRecords) -> list[dict[str, Any]]:
    return [
        {"study_id": study_id, "session_id": session.session_id}
        | {key: record.get(key) for key in ("video_id", "variant", "mode", "choice", "rating", "correct")}
        for record in session.of_kind("realism")
    ]


@dataclass
class CollectReport:
    """What one collection stored: rows per table, sessions, duplicates dropped, warnings."""

    study_id: str
    rows: dict[str, int]
    sessions: int
    duplicates: int
    warnings: list[str]


def _study_frames(data_dir: str | os.PathLike[str], study_id: str) -> tuple[dict[str, pd.DataFrame], CollectReport]:
    study = load_collected_study(data_dir, study_id)
    videos = {str(v["video_id"]): v for v in study["videos"]}
    sessions, cursor, realism = [], [], []
    duplicates, warnings = 0, []
    for path in session_files(data_dir, study_id):
        session = read_session_file(path)
        sessions.append(_session_row(study_id, session))
        cursor.extend(_cursor_rows(study_id, session, videos))
        realism.extend(_realism_rows(study_id, session))
        duplicates += session.duplicates
        warnings.extend(session.warnings)
    frames = {
        "pretest_sessions": pd.DataFrame(sessions, columns=COLUMNS["pretest_sessions"]),
        "pretest_cursor": pd.DataFrame(cursor, columns=COLUMNS["pretest_cursor"]),
        "pretest_realism": pd.DataFrame(realism, columns=COLUMNS["pretest_realism"]),
    }
    rows = {table: len(frame) for table, frame in frames.items()}
    return frames, CollectReport(study_id, rows, len(sessions), duplicates, warnings)


def _add_missing_columns(con: Any, table: str) -> None:
    """Columns added to a pretest table since a warehouse was made (``pretest_cursor.pointer``), as NULL."""
    present = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    }
    for name, column_type in COLUMN_TYPES[table].items():
        if name not in present:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {column_type}")


def _replace_study(con: Any, study_id: str, frames: Mapping[str, pd.DataFrame]) -> None:
    for table, frame in frames.items():
        con.execute(PRETEST_TABLES[table])
        _add_missing_columns(con, table)
        con.execute(f"DELETE FROM {table} WHERE study_id = ?", [study_id])
        if len(frame):
            con.register("_pretest_rows", frame.astype(object).where(frame.notna(), None))
            try:
                columns = ", ".join(f'"{c}"' for c in COLUMNS[table])
                con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _pretest_rows")
            finally:
                con.unregister("_pretest_rows")


def collect_study(data_dir: str | os.PathLike[str], database: str | os.PathLike[str], study_id: str) -> CollectReport:
    """Replace ``study_id``'s rows in the three pretest tables with what its session files hold now."""
    frames, report = _study_frames(data_dir, study_id)
    with write_connection(database) as con, transaction(con):
        _replace_study(con, study_id, frames)
    return report


def collect_pretest(
    data_dir: str | os.PathLike[str], database: str | os.PathLike[str], studies: Iterable[str] | None = None
) -> list[CollectReport]:
    """Collect every study under ``D/pretest`` (or ``studies``); a study whose folder is gone loses its rows."""
    wanted = list(studies) if studies is not None else study_ids(data_dir)
    parsed = [_study_frames(data_dir, study_id) for study_id in wanted]
    with write_connection(database) as con, transaction(con):
        for table in PRETEST_TABLES.values():
            con.execute(table)
        if studies is None:
            keep = f"WHERE study_id NOT IN ({', '.join('?' for _ in wanted)})" if wanted else ""
            for table in PRETEST_TABLES:
                con.execute(f"DELETE FROM {table} {keep}", wanted)
        for frames, report in parsed:
            _replace_study(con, report.study_id, frames)
    return [report for _, report in parsed]
