"""What the warehouse does about a damaged file and about connections held by someone else.

Integrity on open: every connection the platform opens first checks that the file holds every
block its tables point to (``pragma_storage_info``'s block ids against the file size; a file cut
short is caught before a write can re-extend it and turn the loss into "computed checksum"
errors later). A file that fails the check, or any query that reports DuckDB's corruption
errors, is moved aside to ``warehouse.corrupt-<UTC time>.duckdb`` and
:class:`WarehouseCorruptError` names both files and the command that rebuilds the warehouse.

Connections of others: DuckDB takes a POSIX lock on the file (shared for ``read_only=True``,
exclusive otherwise). :func:`lock_holders` reads ``/proc/locks`` to tell which processes hold
which, so a writer can tell a reader (whom it writes beside, see
:func:`align_core.io.warehouse.write_connection`) from another writer (whom it names:
:class:`WarehouseBusyError`, "close the connection held by PID N").
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
from pathlib import Path

import duckdb

__all__ = [
    "REBUILD_COMMAND",
    "WarehouseBusyError",
    "WarehouseCorruptError",
    "check_storage",
    "corrupt_error",
    "is_corruption",
    "is_lock_conflict",
    "lock_holders",
    "lock_message_pid",
    "move_aside",
    "needs_rebuild_error",
    "process_description",
    "rebuild_marker",
    "table_checksums",
]

#: How a user rebuilds the warehouse (``{data}`` is the data directory).
REBUILD_COMMAND = "align-warehouse rebuild --data-dir {data}"
_FILE_HEADER_BYTES = 3 * 4096  # DuckDB's main header and two database headers precede block 0
_CORRUPTION_MARKERS = (
    "corrupt database file",
    "computed checksum",
    "could not read enough bytes",
    "not a valid duckdb database file",
    "failed to deserialize",
)
_LOCK_MARKER = "could not set lock on file"
_PID_IN_MESSAGE = re.compile(r"\(PID (\d+)\)")


class WarehouseCorruptError(RuntimeError):
    """The warehouse file is damaged; it was moved aside (``aside``) and must be rebuilt."""

    def __init__(self, message: str, database: Path, aside: Path | None):
        super().__init__(message)
        self.database, self.aside = database, aside


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse in a way the platform must not write around."""

    def __init__(self, message: str, pids: list[int]):
        super().__init__(message)
        self.pids = pids


def is_corruption(exc: BaseException) -> bool:
    """Whether a DuckDB error says the file itself is damaged (not a query or lock problem)."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(marker in text for marker in _CORRUPTION_MARKERS)


def is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_MARKER in str(exc).lower()


def lock_message_pid(exc: BaseException) -> int | None:
    """The PID DuckDB names in its lock error ("Conflicting lock is held in ... (PID 123)")."""
    match = _PID_IN_MESSAGE.search(str(exc))
    return int(match.group(1)) if match else None


def check_storage(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise ``duckdb.IOException`` (a corruption error) when ``path`` lacks blocks its tables use.

    Costs one ``pragma_storage_info`` per table (metadata only, no data read): milliseconds.
    """
    size = path.stat().st_size
    block_size = int(con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0])
    if size > _FILE_HEADER_BYTES and (size - _FILE_HEADER_BYTES) % block_size:
        raise duckdb.IOException(
            f"Corrupt database file: {path} is {size} bytes, not a whole number of {block_size}-byte blocks"
        )
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    for schema, table in tables:
        qualified = f"{schema}.{table}".replace("'", "''")
        last = con.execute(
            "SELECT max(greatest(block_id, coalesce(list_max(additional_block_ids), -1))) "
            f"FROM pragma_storage_info('{qualified}')"
        ).fetchall()[0][0]
        if last is not None and _FILE_HEADER_BYTES + (int(last) + 1) * block_size > size:
            raise duckdb.IOException(
                f"Corrupt database file: table {table} uses block {last}, beyond the end of {path} ({size} bytes)"
            )


def move_aside(database: Path) -> Path:
    """Rename ``database`` (and its WAL) to ``<stem>.corrupt-<UTC time>.duckdb``; returns the new path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = database.with_name(f"{database.stem}.corrupt-{stamp}{database.suffix}")
    shutil.move(str(database), str(aside))
    wal = database.with_name(database.name + ".wal")
    if wal.exists():
        shutil.move(str(wal), str(aside.with_name(aside.name + ".wal")))
    return aside


def rebuild_marker(database: Path) -> Path:
    """``<warehouse>.needs-rebuild``: present from the moment a damaged file is moved aside until a
    rebuild swaps a whole one in. While it exists nothing opens the warehouse, so no step writes a
    fresh, partial one (a plan registered there would not see the results that were lost)."""
    return database.with_name(database.name + ".needs-rebuild")


def corrupt_error(database: Path, cause: BaseException, aside: Path | None) -> WarehouseCorruptError:
    """The error a user sees: which file, why, where it went, and the command that rebuilds it.

    Writes the :func:`rebuild_marker` when the file was moved aside."""
    where = f"moved aside to {aside}" if aside else "left in place (another process holds it)"
    command = REBUILD_COMMAND.format(data=database.parent)
    reason = str(cause).splitlines()[0]
    message = (
        f"warehouse {database} is damaged ({reason}); {where}. "
        f"Every table can be rebuilt from the artifacts, the A/B inbox archive and experiments/*.json: "
        f"run `{command}` (docs/operations.md, 'Warehouse recovery')."
    )
    if aside is not None:
        rebuild_marker(database).write_text(f"{aside}\n{reason}\n", encoding="utf-8")
    return WarehouseCorruptError(message, database, aside)


def needs_rebuild_error(database: Path) -> WarehouseCorruptError | None:
    """The error to raise while ``database`` awaits a rebuild (its marker exists), else None."""
    marker = rebuild_marker(database)
    try:
        aside_text, _, reason = marker.read_text(encoding="utf-8").partition("\n")
    except OSError:
        return None
    command = REBUILD_COMMAND.format(data=database.parent)
    message = (
        f"warehouse {database} awaits a rebuild: it was found damaged ({reason.strip()}) and moved aside to "
        f"{aside_text.strip()}. Nothing reads or writes it until `{command}` runs (docs/operations.md)."
    )
    return WarehouseCorruptError(message, database, Path(aside_text.strip()) if aside_text.strip() else None)


def _proc_locks() -> list[list[str]]:
    try:
        return [line.split() for line in Path("/proc/locks").read_text().splitlines()]
    except OSError:
        return []


def lock_holders(path: Path, kind: str = "POSIX") -> list[tuple[int, str]]:
    """(pid, "READ" or "WRITE") for each ``kind`` (POSIX: DuckDB; FLOCK: filelock) lock on ``path``.

    Empty where ``/proc/locks`` cannot be read (not Linux) or nobody holds one. Our own PID is left out.
    """
    try:
        inode = path.stat().st_ino
    except OSError:
        return []
    holders = []
    for fields in _proc_locks():
        # "1: POSIX  ADVISORY  READ 4247 fe:00:2179715 0 EOF" ("->" marks a waiter: skip it)
        if len(fields) < 6 or fields[1] != kind or fields[1] == "->":
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit() and int(fields[4]) != os.getpid():
            holders.append((int(fields[4]), fields[3]))
    return holders


def process_description(pid: int) -> str:
    """``PID 123 (python -i query.py)``: the command line when /proc has it."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"PID {pid}"
    command = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
    return f"PID {pid} ({command[:120]})" if command else f"PID {pid}"


def table_checksums(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """(rows, order-independent checksum of every row) per table: reads every block, so every
    block's own checksum is verified too (``align-warehouse check``; rebuild comparisons)."""
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY table_name"
    ).fetchall()
    out: dict[str, tuple[int, int]] = {}
    for (table,) in tables:
        quoted = '"' + str(table).replace('"', '""') + '"'
        rows, total = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {quoted} t").fetchall()[0]
        out[str(table)] = (int(rows), int(total))
    return out
