"""Restore the experiment registry from ``<data>/experiments/*.experiment.json``.

Each file (written by :func:`~align_core.experiments.experiments_table.save_experiment_file` on
every registry write) holds one experiment's rows of every registry table with the table's
CREATE statement, so a new warehouse gets the same tables, types, keys and rows back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align_core.experiments.experiments_table import EXPERIMENT_FILE_SUFFIX, REGISTRY_TABLES

__all__ = [
    "experiment_files",
    "restore_registry",
    "save_all_experiment_files",
]


def experiment_files(experiments_dir: str | Path) -> list[Path]:
    folder = Path(experiments_dir)
    return sorted(folder.glob(f"*{EXPERIMENT_FILE_SUFFIX}")) if folder.is_dir() else []


def _column_types(con: Any, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _insert_rows(con: Any, table: str, columns: list[str], rows: list[list[Any]]) -> None:
    types = _column_types(con, table)
    missing = [c for c in columns if c not in types]
    if missing:
        raise ValueError(f"table {table} has no column(s) {missing}")
    quoted = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f"CAST(? AS {types[c]})" for c in columns)
    con.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({values})', rows)


def restore_registry(con: Any, experiments_dir: str | Path) -> dict[str, int]:
    """Insert the rows of every experiment file into ``con`` (tables created as recorded).

    Returns the rows restored per table. A file that cannot be read raises ``ValueError``
    naming it: a registry restored without it would silently lose that experiment.
    """
    restored: dict[str, int] = {}
    for path in experiment_files(experiments_dir):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            tables = document["tables"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"experiment file {path} cannot be read ({exc}); fix or remove it") from exc
        for table in REGISTRY_TABLES:
            entry = tables.get(table)
            if not entry:
                continue
            con.execute(entry["sql"].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
            if entry["rows"]:
                _insert_rows(con, table, list(entry["columns"]), entry["rows"])
            restored[table] = restored.get(table, 0) + len(entry["rows"])
    return restored


def save_all_experiment_files(con: Any) -> list[str]:
    """Write the file of every experiment in ``con``'s registry (a warehouse from before the files)."""
    from align_core.experiments.experiments_table import save_experiment_file

    names = {str(n) for (n,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    ids: set[str] = set()
    for table in REGISTRY_TABLES:
        if table in names:
            ids |= {str(i) for (i,) in con.execute(f'SELECT DISTINCT experiment_id FROM "{table}"').fetchall()}
    for experiment_id in sorted(ids):
        save_experiment_file(con, experiment_id)
    return sorted(ids)
