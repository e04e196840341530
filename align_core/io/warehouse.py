"""The DuckDB warehouse: one file, transactional and idempotent writes, one writer at a time.

Everything that touches DuckDB goes through this module: connections (:func:`write_connection`,
:func:`read_connection`), transactions (:func:`transaction`, the only place that spells BEGIN /
COMMIT / ROLLBACK), keyed upserts (:func:`replace_rows`) and tables collected from per-video
Parquet files (:func:`collect_parquet_table`). The Dagster layer configures it with the
``DuckDBResource``'s ``database`` path, so overriding that resource redirects every table.

DuckDB lets one process write a database file at a time. Partition runs of Dagster's
multiprocess executor (and sensors ingesting A/B exports) therefore take an exclusive
file lock (``filelock``) on ``<warehouse>.lock`` around every write; waiting on the lock serialises
writers on one machine without losing rows. Readers open the file read-only and never wait
on writers' locks beyond DuckDB's own.

Writes replace whole keys inside one transaction (``DELETE`` the rows of the key, ``INSERT``
the new ones), so re-running a partition replaces its rows and never duplicates them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

__all__ = [
    "collect_parquet_table",
    "read_connection",
    "rebuild_table_from_parquet",
    "replace_rows",
    "replace_table",
    "table_exists",
    "transaction",
    "write_connection",
    "write_partition_rows",
]


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def warehouse_lock(database: str | os.PathLike[str], timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the exclusive writer lock for ``database`` (blocks up to ``timeout_s``).

    A ``filelock.FileLock`` (an ``flock`` on ``<warehouse>.lock``): other processes, and other
    locks in this one, wait for it. A negative ``timeout_s`` makes a single attempt.
    """
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(_lock_path(database), timeout=max(timeout_s, 0.0))
    try:
        lock.acquire()
    except Timeout as exc:
        raise TimeoutError(f"waited {timeout_s:.0f} s for the writer lock on {database}") from exc
    try:
        yield
    finally:
        lock.release()


def _connect_with_retry(database: Path, read_only: bool, attempts: int = 40) -> duckdb.DuckDBPyConnection:
    delay = 0.05
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(database), read_only=read_only)
        except duckdb.IOException:
            # Another process holds DuckDB's own file lock (a reader opened read-write, or a
            # writer on another machine-level lock); back off and try again.
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def write_connection(database: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection under the writer lock; closed (and the lock released) on exit."""
    database = Path(database)
    with warehouse_lock(database):
        con = _connect_with_retry(database, read_only=False)
        try:
            yield con
        finally:
            con.close()


@contextlib.contextmanager
def read_connection(database: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    database = Path(database)
    if not database.exists():
        raise FileNotFoundError(f"warehouse {database} does not exist yet: materialize the assets first")
    con = _connect_with_retry(database, read_only=True)
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block in one transaction: committed if it finishes, rolled back if it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {identifier!r}")
    return f'"{identifier}"'


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    key: Mapping[str, Any],
) -> int:
    """Replace every row of ``table`` matching ``key`` with ``frame``, in one transaction.

    The table is created from ``frame``'s schema on first use. Columns are matched by name,
    so a later frame may not add columns an existing table lacks (that is a schema change and
    should be a migration). Returns the number of rows inserted.
    """
    for column, value in key.items():
        if column not in frame.columns:
            raise ValueError(f"key column {column!r} missing from the rows written to {table}")
        if len(frame) and not (frame[column] == value).all():
            raise ValueError(f"rows written to {table} for {column}={value!r} carry other {column} values")
    qtable = _quote(table)
    con.register("_incoming_rows", frame)
    try:
        with transaction(con):
            con.execute(f"CREATE TABLE IF NOT EXISTS {qtable} AS SELECT * FROM _incoming_rows LIMIT 0")
            where = " AND ".join(f"{_quote(c)} = ?" for c in key) or "TRUE"
            con.execute(f"DELETE FROM {qtable} WHERE {where}", list(key.values()))
            columns = ", ".join(_quote(c) for c in frame.columns)
            con.execute(f"INSERT INTO {qtable} ({columns}) SELECT {columns} FROM _incoming_rows")
    finally:
        con.unregister("_incoming_rows")
    return len(frame)


def write_partition_rows(
    database: str | os.PathLike[str], table: str, frame: pd.DataFrame, key: Mapping[str, Any]
) -> int:
    """Open the warehouse under the writer lock and :func:`replace_rows` (the common case)."""
    with write_connection(database) as con:
        return replace_rows(con, table, frame, key)


def replace_table(database: str | os.PathLike[str], table: str, frame: pd.DataFrame) -> int:
    """Replace ``table`` with ``frame`` in one transaction under the writer lock; returns its rows."""
    qtable = _quote(table)
    with write_connection(database) as con:
        con.register("_table_rows", frame)
        try:
            with transaction(con):
                con.execute(f"CREATE OR REPLACE TABLE {qtable} AS SELECT * FROM _table_rows")
        finally:
            con.unregister("_table_rows")
    return len(frame)


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()
    return bool(row and row[0])


# -- tables collected from per-video Parquet files ------------------------------------------------
#: Above this many files a table rebuild is incremental by default: only files whose size or
#: modification time changed since the last rebuild are read (a full rebuild reads every row,
#: which is linear in the corpus: minutes at 100,000 real-size videos).
INCREMENTAL_MIN_FILES = 2_000
_STATE_TABLE = "_collected_files"


class RebuildResult:
    """What a rebuild did: rows in the table, files in the glob, files read, full or incremental."""

    def __init__(self, rows: int, files: int, files_read: int, incremental: bool):
        self.rows, self.files, self.files_read, self.incremental = rows, files, files_read, incremental

    def __repr__(self) -> str:
        return f"RebuildResult(rows={self.rows}, files={self.files}, files_read={self.files_read}, incremental={self.incremental})"


def _file_state(files: list[Path]) -> pd.DataFrame:
    stats = [path.stat() for path in files]
    return pd.DataFrame(
        {
            "path": [str(path) for path in files],
            "video_id": [path.parent.name for path in files],
            "mtime_ns": [s.st_mtime_ns for s in stats],
            "size": [s.st_size for s in stats],
        }
    )


def rebuild_table_from_parquet(
    database: str | os.PathLike[str],
    table: str,
    files: list[Path],
    order_by: str,
    *,
    incremental: bool | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> RebuildResult:
    """(Re)build ``table`` from per-video Parquet files ``artifacts/<asset>/<video_id>/<file>``.

    Full: ``CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet(files) ORDER BY ...`` in
    one transaction. Incremental (default above :data:`INCREMENTAL_MIN_FILES` files, or when
    ``incremental=True``): the table remembers each file's size and modification time in
    ``_collected_files``; only new or changed files are read, and their videos' rows (and those
    of files that disappeared) are replaced in one transaction, so the cost follows the videos
    that changed, not the corpus. Incremental rows are appended, so the table's physical order
    is only that of the last full rebuild: query with ``ORDER BY``. A schema change (a column
    added), a missing state or an empty file list falls back to a full rebuild. Runs under the
    writer lock unless a connection ``con`` (already under it) is given.
    """
    files = sorted(Path(f) for f in files)
    if incremental is None:
        incremental = len(files) >= INCREMENTAL_MIN_FILES
    rebuild = _ParquetRebuild(table, files, order_by, incremental)
    if con is not None:
        return rebuild.run(con)
    with write_connection(database) as connection:
        return rebuild.run(connection)


class _ParquetRebuild:
    """One rebuild of ``table`` from ``files``: full, or only the files changed since the last one."""

    def __init__(self, table: str, files: list[Path], order_by: str, incremental: bool):
        self.table, self.qtable = table, _quote(table)
        self.files, self.order_by, self.incremental = files, order_by, incremental

    def run(self, con: duckdb.DuckDBPyConnection) -> RebuildResult:
        state = _file_state(self.files)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_STATE_TABLE} (tbl VARCHAR, path VARCHAR, video_id VARCHAR, mtime_ns BIGINT, size BIGINT)"
        )
        if not self.files:
            with transaction(con):
                con.execute(f"DROP TABLE IF EXISTS {self.qtable}")
                con.execute(f"DELETE FROM {_STATE_TABLE} WHERE tbl = ?", [self.table])
            return RebuildResult(0, 0, 0, False)
        previous = con.execute(f"SELECT path, mtime_ns, size FROM {_STATE_TABLE} WHERE tbl = ?", [self.table]).df()
        use_incremental = self.incremental and table_exists(con, self.table) and len(previous) > 0
        files_read = len(self.files)
        if use_incremental:
            changed_read = self._apply_changes(con, state, previous)
            use_incremental = changed_read is not None
            files_read = changed_read if changed_read is not None else files_read
        if not use_incremental:
            with transaction(con):
                self._full(con)
                self._record_state(con, state)
        rows = con.execute(f"SELECT count(*) FROM {self.qtable}").fetchone()[0]
        return RebuildResult(int(rows), len(self.files), files_read, use_incremental)

    def _full(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            f"CREATE OR REPLACE TABLE {self.qtable} AS SELECT * FROM read_parquet(?, union_by_name = true) ORDER BY {self.order_by}",
            [[str(f) for f in self.files]],
        )

    def _record_state(self, con: duckdb.DuckDBPyConnection, state: pd.DataFrame) -> None:
        con.execute(f"DELETE FROM {_STATE_TABLE} WHERE tbl = ?", [self.table])
        con.register("_file_state", state)
        con.execute(
            f"INSERT INTO {_STATE_TABLE} SELECT ?, path, video_id, mtime_ns, size FROM _file_state", [self.table]
        )
        con.unregister("_file_state")

    def _apply_changes(self, con: duckdb.DuckDBPyConnection, state: pd.DataFrame, previous: pd.DataFrame) -> int | None:
        """Replace the rows of changed or vanished files' videos; the files read, None if the schema changed."""
        merged = state.merge(previous, on="path", how="left", suffixes=("", "_old"))
        changed = merged[(merged["mtime_ns"] != merged["mtime_ns_old"]) | (merged["size"] != merged["size_old"])]
        gone = previous[~previous["path"].isin(state["path"])]
        stale_ids = sorted(set(changed["video_id"]) | {Path(p).parent.name for p in gone["path"]})
        read = [str(p) for p in changed["path"]]
        try:
            with transaction(con):
                if stale_ids:
                    con.register("_stale_ids", pd.DataFrame({"video_id": stale_ids}))
                    con.execute(f"DELETE FROM {self.qtable} WHERE video_id IN (SELECT video_id FROM _stale_ids)")
                    con.unregister("_stale_ids")
                if read:
                    con.execute(
                        f"INSERT INTO {self.qtable} BY NAME SELECT * FROM read_parquet(?, union_by_name = true)", [read]
                    )
                self._record_state(con, state)
        except duckdb.BinderException:  # a new column: the schema changed, rebuild whole
            return None
        return len(read)


def collect_parquet_table(
    database: str | os.PathLike[str],
    table: str,
    files: list[Path],
    order_by: str,
    eligibility_files: list[Path] | None = None,
) -> tuple[int, int, pd.DataFrame | None]:
    """(Re)build ``table`` from ``files`` (one Parquet file per video) under the writer lock.

    Returns (rows, files, a 10-row preview); no files drops the table. Re-running replaces the
    video's rows, never duplicates them. Plain tables rebuild incrementally past
    :data:`INCREMENTAL_MIN_FILES` videos (:func:`rebuild_table_from_parquet`).
    ``eligibility_files`` (not None): join each row's ``eligible`` / ``exclusion_reason`` from
    those per-video verdict files (:mod:`align_core.experiments.eligibility`); such a joined table is rebuilt
    whole in one transaction.
    """
    from align_core.experiments.eligibility import variants_select_sql

    qtable = _quote(table)
    with write_connection(database) as con:
        if eligibility_files is None or not files:
            result = rebuild_table_from_parquet(database, table, files, order_by, con=con)
            if not files:
                return 0, 0, None
            rows = result.rows
        else:
            select = variants_select_sql("$files", "$checked" if eligibility_files else None)
            with transaction(con):
                con.execute(
                    f"CREATE OR REPLACE TABLE {qtable} AS {select} ORDER BY {order_by}",
                    {
                        "files": [str(f) for f in files],
                        **({"checked": [str(f) for f in eligibility_files]} if eligibility_files else {}),
                    },
                )
            rows = con.execute(f"SELECT count(*) FROM {qtable}").fetchone()[0]
        preview = con.execute(f"SELECT * FROM {qtable} LIMIT 10").df()
    return int(rows), len(files), preview
