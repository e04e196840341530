"""Nothing lost, nobody blocked without a word (issue 21, items 4 and 7).

A damaged warehouse is found before anything writes to it, moved aside and named with how to
rebuild it; a connection another program holds open (even read-only) gets a message naming its
PID instead of DuckDB's raw lock error.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from align_core.io import warehouse
from align_core.io.warehouse import CorruptWarehouseError, WarehouseBusyError, check_warehouse, replace_table


def make_warehouse(path: Path, rows: int = 200_000) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE ab_results AS SELECT range AS impressions, range % 7 AS clicks FROM range({rows})")
        con.execute("CREATE TABLE videos AS SELECT 'v' || range AS video_id FROM range(50)")
    return path


def test_a_truncated_warehouse_is_found_moved_aside_and_named(tmp_path: Path) -> None:
    database = make_warehouse(tmp_path / "warehouse.duckdb")
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(CorruptWarehouseError) as caught:
        check_warehouse(database)
    message = str(caught.value)
    assert str(database) in message and "moved aside" in message and "align-backfill" in message
    assert not database.exists() and caught.value.moved_to is not None and caught.value.moved_to.exists()
    replace_table(database, "videos", pd.DataFrame({"video_id": ["a"]}))  # a fresh file works


def test_a_good_warehouse_passes_the_check_unchanged(tmp_path: Path) -> None:
    database = make_warehouse(tmp_path / "warehouse.duckdb", rows=1000)
    before = database.read_bytes()
    check_warehouse(database)
    assert database.exists() and database.read_bytes() == before


def test_a_reader_holding_the_warehouse_is_named_by_pid(tmp_path: Path, monkeypatch) -> None:
    database = make_warehouse(tmp_path / "warehouse.duckdb", rows=10)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(database)!r}, read_only=True); "
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        monkeypatch.setattr(warehouse, "CONNECT_ATTEMPTS", 3)
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as caught:
            replace_table(database, "videos", pd.DataFrame({"video_id": ["a"]}))
        assert time.monotonic() - started < 10
        assert f"PID {holder.pid}" in str(caught.value) and "Close that connection" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
