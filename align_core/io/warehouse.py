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

Readers never block writers: when another process holds a read-only connection, a writer writes
a copy of the file and renames it over the original (the reader keeps the snapshot it opened).
A read-write connection held outside the platform is named ("close the connection held by PID
N") instead of waited on. Every connection checks the file on open; a damaged one is moved
aside and the error says how to rebuild (:mod:`align_core.io.warehouse_guard`).

Writes replace whole keys inside one transaction (``DELETE`` the rows of the key, ``INSERT``
the new ones), so re-running a partition replaces its rows and never duplicates them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from align_core.io.warehouse_guard import (
    REBUILD_COMMAND,
    WarehouseBusyError,
    WarehouseCorruptError,
    check_storage,
    corrupt_error,
    is_corruption,
    is_lock_conflict,
    lock_holders,
    lock_message_pid,
    move_aside,
    needs_rebuild_error,
    process_description,
)

__all__ = [
    "READER_GRACE_S",
    "WarehouseBusyError",
    "WarehouseCorruptError",
    "collect_parquet_table",
    "read_connection",
    "rebuild_table_from_parquet",
    "replace_rows",
    "replace_table",
    "table_exists",
    "transaction",
    "warehouse_lock",
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


#: How long a writer waits for other processes' read-only connections to close before it
#: writes beside them (a copy of the file, swapped in atomically).
READER_GRACE_S = 0.5


def _connect_with_retry(database: Path, read_only: bool, attempts: int = 40) -> duckdb.DuckDBPyConnection:
    """A read-only connection, retried while a platform writer holds the file.

    A connection held read-write by a process outside the platform (one that does not hold the
    writer lock) is named at once instead: waiting would not end until that user closes it.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(database), read_only=read_only)
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                raise
            foreign = _foreign_writers(database)
            if foreign or attempt == attempts - 1:
                raise _busy_error(database, foreign or _pids_named(exc)) from exc
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    raise AssertionError("unreachable")


def _foreign_writers(database: Path) -> list[int]:
    """PIDs holding DuckDB's exclusive lock on ``database`` without holding the platform's writer lock."""
    writers = [pid for pid, kind in lock_holders(database) if kind == "WRITE"]
    platform = {pid for pid, _ in lock_holders(_lock_path(database), kind="FLOCK")}
    return [pid for pid in writers if pid not in platform]


def _pids_named(exc: BaseException) -> list[int]:
    pid = lock_message_pid(exc)
    return [pid] if pid is not None else []


def _busy_error(database: Path, pids: list[int]) -> WarehouseBusyError:
    who = ", ".join(process_description(pid) for pid in pids) or "another process"
    return WarehouseBusyError(
        f"warehouse {database} is open read-write in {who}: close the connection held by "
        f"{'PID ' + str(pids[0]) if pids else 'that process'} (query with duckdb.connect(path, read_only=True); "
        "read-only sessions never block the platform)",
        pids,
    )


def _quarantine(database: Path, cause: BaseException, locked: bool = True) -> WarehouseCorruptError:
    """Move a damaged ``database`` aside (under the writer lock) and return the error to raise."""
    aside = None
    try:
        with contextlib.ExitStack() as stack:
            if not locked:
                stack.enter_context(warehouse_lock(database, timeout_s=30.0))
            if database.exists():
                aside = move_aside(database)
    except TimeoutError:
        pass
    return corrupt_error(database, cause, aside)


#: Files (inode, size, mtime) this process has checked or written: not checked again until they
#: change (the block check reads every table's storage metadata: ~0.2 s at 20 M rows).
_VERIFIED: set[tuple[int, int, int]] = set()


def _file_state_key(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _remember_verified(path: Path) -> None:
    """Record the file this process just wrote (DuckDB wrote every block it points to)."""
    with contextlib.suppress(OSError):
        if len(_VERIFIED) > 1000:
            _VERIFIED.clear()
        _VERIFIED.add(_file_state_key(path))


def _open_checked(database: Path, path: Path, read_only: bool, locked: bool) -> duckdb.DuckDBPyConnection:
    """Connect to ``path`` (``database`` or a copy of it) and check its storage.

    A damaged file moves ``database`` aside and raises :class:`WarehouseCorruptError`; a lock
    conflict propagates as DuckDB's ``IOException`` (writers) or is waited on (readers).
    """
    try:
        con = _connect_with_retry(database, read_only=True) if read_only else duckdb.connect(str(path))
    except duckdb.Error as exc:
        if is_corruption(exc):
            raise _quarantine(database, exc, locked) from exc
        raise
    try:
        if _file_state_key(path) not in _VERIFIED:
            check_storage(con, path)
            _remember_verified(path)
    except duckdb.Error as exc:
        con.close()
        if is_corruption(exc):
            raise _quarantine(database, exc, locked) from exc
        raise
    return con


def _writer_connection(database: Path) -> duckdb.DuckDBPyConnection | None:
    """A read-write connection on ``database``, or None when only other processes' readers hold it.

    Called under the writer lock, so a conflicting exclusive lock belongs to a process outside
    the platform: it is named at once (:class:`WarehouseBusyError`).
    """
    deadline = time.monotonic() + READER_GRACE_S
    while True:
        try:
            return _open_checked(database, database, read_only=False, locked=True)
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                raise
            holders = lock_holders(database)
            writers = [pid for pid, kind in holders if kind == "WRITE"]
            if writers or (not holders and time.monotonic() > deadline):
                raise _busy_error(database, writers or _pids_named(exc)) from exc
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


@contextlib.contextmanager
def _guarded(
    database: Path, con: duckdb.DuckDBPyConnection, locked: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield ``con``; a corruption error raised inside moves the damaged file aside."""
    try:
        yield con
    except duckdb.Error as exc:
        if is_corruption(exc):
            con.close()
            raise _quarantine(database, exc, locked) from exc
        raise
    finally:
        con.close()


@contextlib.contextmanager
def _write_beside_readers(database: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Write a copy of ``database`` and rename it over the original: readers keep their snapshot.

    A read-only connection holds the inode it opened, so it goes on reading the old file until it
    reconnects; the platform never waits for it. An error inside the block discards the copy: the
    whole block is then all or nothing.
    """
    copy = database.with_name(f".{database.name}.swap-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    wal = database.with_name(database.name + ".wal")
    try:
        shutil.copyfile(database, copy)
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        con = _open_checked(database, copy, read_only=False, locked=True)
        with _guarded(database, con):
            yield con
        _fsync(copy)
        _remember_verified(copy)
        if wal.exists():
            wal.unlink()
        os.replace(copy, database)
        _fsync(database.parent)
    finally:
        for leftover in (copy, copy.with_name(copy.name + ".wal")):
            if leftover.exists():
                leftover.unlink()


def _refuse_if_awaiting_rebuild(database: Path, creating: bool = False) -> None:
    """Refuse a warehouse awaiting a rebuild, and (``creating``) a new empty one beside registry files.

    A warehouse that is missing while ``experiments/*.experiment.json`` exist was lost: a new one
    would hold a partial registry (and its writes would overwrite those files), so the user is
    told to rebuild. A rebuild's own file (a hidden name) is exempt.
    """
    error = needs_rebuild_error(database)
    if error is not None:
        raise error
    if creating and not database.exists() and not database.name.startswith("."):
        registry = list((database.parent / "experiments").glob("*.experiment.json"))
        if registry:
            command = REBUILD_COMMAND.format(data=database.parent)
            raise WarehouseCorruptError(
                f"warehouse {database} is missing, but {database.parent / 'experiments'} holds the registry of "
                f"{len(registry)} experiment(s): run `{command}` to restore every table (a new, empty warehouse "
                "would hold a partial registry)",
                database,
                None,
            )


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_connection(database: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection under the writer lock; closed (and the lock released) on exit.

    The file is checked on open (:func:`~align_core.io.warehouse_guard.check_storage`; a damaged
    one is moved aside and :class:`WarehouseCorruptError` says how to rebuild). Other processes'
    read-only connections never block the write: after :data:`READER_GRACE_S` the write goes to a
    copy that replaces the file atomically when the block finishes (an error discards the copy).
    A read-write connection of another process is named at once (:class:`WarehouseBusyError`,
    "close the connection held by PID N").
    """
    database = Path(database)
    with warehouse_lock(database):
        _refuse_if_awaiting_rebuild(database, creating=True)
        con = _writer_connection(database)
        if con is None:
            with _write_beside_readers(database) as swapped:
                yield swapped
            return
        with _guarded(database, con):
            yield con
        _remember_verified(database)


@contextlib.contextmanager
def read_connection(database: str | os.PathLike[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, checked on open like :func:`write_connection`'s."""
    database = Path(database)
    _refuse_if_awaiting_rebuild(database)
    if not database.exists():
        raise FileNotFoundError(f"warehouse {database} does not exist yet: materialize the assets first")
    con = _open_checked(database, database, read_only=True, locked=False)
    with _guarded(database, con, locked=False):
        yield con


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
