"""Simulated results are labelled wherever they appear: a column in every table, a banner on the page.

Rows an A/B simulator made carry ``ab_results.simulated`` (the demo's export sets it). Every
``analysis_*`` table with an ``experiment_id`` gets a ``simulated`` column, and the report and
headline open with a banner naming the simulated experiments.
"""

from __future__ import annotations

import os

import pandas as pd

from align_core.io.warehouse import read_connection, table_exists

__all__ = ["label_simulated", "simulated_banner", "simulated_experiments"]


def simulated_experiments(database: str | os.PathLike[str]) -> list[str]:
    """Experiments with at least one simulated result row (sorted)."""
    with read_connection(database) as con:
        if not table_exists(con, "ab_results"):
            return []
        columns = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'ab_results'"
            ).fetchall()
        }
        if "simulated" not in columns:
            return []
        rows = con.execute("SELECT DISTINCT experiment_id FROM ab_results WHERE simulated ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def label_simulated(tables: dict[str, pd.DataFrame], simulated: list[str]) -> dict[str, pd.DataFrame]:
    """Each table with an ``experiment_id`` column gains ``simulated`` (true for a simulated experiment)."""
    labelled = {}
    for name, frame in tables.items():
        if "experiment_id" in frame.columns:
            frame = frame.assign(simulated=frame["experiment_id"].astype(str).isin(simulated))
        labelled[name] = frame
    return labelled


def simulated_banner(simulated: list[str]) -> str:
    """The sentence that opens the report and the headline when any experiment is simulated ('' otherwise)."""
    if not simulated:
        return ""
    return (
        f"SIMULATED DATA: the results of {', '.join(simulated)} were made by the demo's A/B simulator with "
        "planted effects. No estimate of these experiments describes real viewers."
    )
