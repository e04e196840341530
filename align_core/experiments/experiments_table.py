"""The warehouse's ``experiments`` table (one row per experiment) and its only writer.

Three things record an experiment: registering its config (the pre-registered plan), registering
planned shares (:func:`~align_core.experiments.ab_results.register_experiment`) and ingesting an
export that carries its results. They all go through :func:`record_experiment`, so the table has
one rule for names and dates whoever writes first.

The registry's source of truth is a file: every write that changes an experiment's registry rows
(``experiments``, its config, arms, variant registry, analysis plans and upload manifest) ends by
rewriting ``<data>/experiments/<id>.experiment.json`` (:func:`save_experiment_file`), inside the
write's transaction, so the file is never behind the table. A lost or damaged warehouse gets its
registry back from these files (:mod:`align_core.experiments.registry_files`).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from align_core.io.atomic import atomic_write_text

__all__ = [
    "EXPERIMENTS_DDL",
    "EXPERIMENT_FILE_SUFFIX",
    "REGISTRY_TABLES",
    "experiment_file",
    "record_experiment",
    "save_experiment_file",
]

#: Tables whose rows belong to one experiment (keyed by ``experiment_id``), saved in its file.
REGISTRY_TABLES: tuple[str, ...] = (
    "experiments",
    "experiment_configs",
    "experiment_arms",
    "experiment_variants",
    "analysis_plans",
    "upload_manifest",
)
EXPERIMENT_FILE_SUFFIX = ".experiment.json"

EXPERIMENTS_DDL = """
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    start_date DATE,
    end_date DATE
)
"""

# LEAST / GREATEST skip NULLs in DuckDB: a date not given never erases a stored one.
_UPSERT = """
INSERT INTO experiments (experiment_id, name, start_date, end_date) VALUES (?, ?, ?, ?)
ON CONFLICT (experiment_id) DO UPDATE SET
    name = COALESCE(excluded.name, experiments.name),
    start_date = LEAST(experiments.start_date, excluded.start_date),
    end_date = GREATEST(experiments.end_date, excluded.end_date)
"""


def record_experiment(
    con: Any,
    experiment_id: str,
    name: str | None = None,
    start_date: _dt.date | None = None,
    end_date: _dt.date | None = None,
) -> None:
    """Insert or widen the experiment's row, on ``con`` (an open write connection, table created).

    The rule, the same for every caller:

    - ``name``: a given name replaces the stored one; None keeps it.
    - ``start_date``: the earliest date known for the experiment, i.e. the earlier of the stored
      and the given one. A planned start (from its config) and the first day of ingested results
      both count; registering again never moves the start later, and results from before the
      planned start move it earlier. None keeps the stored date.
    - ``end_date``: likewise the latest date known (the later of stored and given).

    The recorded range therefore only widens: it spans the plan and every result day. The
    experiment's file is rewritten (:func:`save_experiment_file`).
    """
    con.execute(_UPSERT, [experiment_id, name, start_date, end_date])
    save_experiment_file(con, experiment_id)


def experiment_file(experiments_dir: Path, experiment_id: str) -> Path:
    return Path(experiments_dir) / f"{experiment_id}{EXPERIMENT_FILE_SUFFIX}"


def _database_file(con: Any) -> Path | None:
    rows = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return Path(rows[0][0]) if rows and rows[0][0] else None


def _table_ddl(con: Any) -> dict[str, str]:
    """Each table's CREATE statement (types and keys), so a restore recreates it exactly."""
    rows = con.execute(
        "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()
    return {str(name): str(sql) for name, sql in rows}


def save_experiment_file(con: Any, experiment_id: str) -> Path | None:
    """Write every registry row of ``experiment_id`` to ``<data>/experiments/<id>.experiment.json``.

    Per table (:data:`REGISTRY_TABLES` that exist): its CREATE statement, columns and rows.
    ``<data>`` is the folder of the database ``con`` writes (None, nothing written, for an
    in-memory one). Runs on the writer's connection, so it sees the write's own rows.
    """
    database = _database_file(con)
    if database is None:
        return None
    ddl = _table_ddl(con)
    tables: dict[str, dict[str, Any]] = {}
    for table in REGISTRY_TABLES:
        if table not in ddl:
            continue
        cursor = con.execute(f'SELECT * FROM "{table}" WHERE experiment_id = ? ORDER BY ALL', [experiment_id])
        rows = cursor.fetchall()
        columns = [d[0] for d in cursor.description]
        tables[table] = {"sql": ddl[table], "columns": columns, "rows": [list(row) for row in rows]}
    document = {"experiment_id": experiment_id, "format": 1, "tables": tables}
    path = experiment_file(database.parent / "experiments", experiment_id)
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True, default=_json_value) + "\n")
    return path


def _json_value(value: Any) -> Any:
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    return str(value)
