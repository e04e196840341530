"""The DuckDB warehouse: one file, transactional and idempotent writes, one writer at a time.

Everything that touches DuckDB goes through this module: connections (:func:`write_connection`,
:func:`read_connection`), transactions (:func:`transaction`, the only place that spells BEGIN /
COMMIT / ROLLBACK), keyed upserts (:func:`replace_rows`) and tables collected from per-video
Parquet files (:func:`collect_parquet_table`). The Dagster layer configures it with the
``DuckDBResource``'s ``database`` path, so overriding that resource redirects every table.

DuckDB lets one process write a database file at a time. Partition runs of Dagster's
multiprocess executor (and sensors ingesting A/B exports) therefore take an exclusive
``fcntl`` lock on ``<warehouse>.lock`` around every write; waiting on the lock serialises
writers on one machine without losing rows. Readers open the file read-only and never wait
on writers' locks beyond DuckDB's own.

Writes replace whole keys inside one transaction (``DELETE`` the rows of the key, ``INSERT``
the new ones), so re-running a partition replaces its rows and never duplicates them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def warehouse_lock(database: str | os.PathLike[str], timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the exclusive writer lock for ``database`` (blocks up to ``timeout_s``)."""
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(_lock_path(database), "a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout_s:.0f} s for the writer lock on {database}")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def collect_parquet_table(
    database: str | os.PathLike[str], table: str, files: list[Path], order_by: str,
    eligibility_files: list[Path] | None = None,
) -> tuple[int, int, pd.DataFrame | None]:
    """(Re)build ``table`` from ``files`` (one Parquet file per video) in one transaction under the writer lock.

    Returns (rows, files, a 10-row preview); no files drops the table. Re-running replaces the
    table whole, so a re-materialized video's rows replace its old ones and never duplicate.
    ``eligibility_files`` (not None): join each row's ``eligible`` / ``exclusion_reason`` from
    those per-video verdict files (:mod:`align_core.eligibility`).
    """
    from align_core.eligibility import variants_select_sql

    qtable = _quote(table)
    with write_connection(database) as con:
        if not files:
            con.execute(f"DROP TABLE IF EXISTS {qtable}")
            return 0, 0, None
        with transaction(con):
            if eligibility_files is not None:
                select = variants_select_sql("$files", "$checked" if eligibility_files else None)
                con.execute(
                    f"CREATE OR REPLACE TABLE {qtable} AS {select} ORDER BY {order_by}",
                    {"files": [str(f) for f in files], **({"checked": [str(f) for f in eligibility_files]} if eligibility_files else {})},
                )
            else:
                con.execute(
                    f"CREATE OR REPLACE TABLE {qtable} AS SELECT * FROM read_parquet(?, union_by_name = true) ORDER BY {order_by}",
                    [[str(f) for f in files]],
                )
        rows = con.execute(f"SELECT count(*) FROM {qtable}").fetchone()[0]
        preview = con.execute(f"SELECT * FROM {qtable} LIMIT 10").df()
    return int(rows), len(files), preview
