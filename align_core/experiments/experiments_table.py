"""The warehouse's ``experiments`` table (one row per experiment) and its only writer.

Three things record an experiment: registering its config (the pre-registered plan), registering
planned shares (:func:`~align_core.experiments.ab_results.register_experiment`) and ingesting an
export that carries its results. They all go through :func:`record_experiment`, so the table has
one rule for names and dates whoever writes first.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = [
    "EXPERIMENTS_DDL",
    "record_experiment",
]

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

    The recorded range therefore only widens: it spans the plan and every result day.
    """
    con.execute(_UPSERT, [experiment_id, name, start_date, end_date])
