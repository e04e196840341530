"""A field an export does not report (stored as NULL) gives rows that say so, never a number.

Summing a NULL column turns it into 0: the report used to say "an arm has no conversions" (or
"0 conversions in 870 clicks") for a source that never reported conversions, with totals of 0
beside it. Every row of a metric that needs a not-reported field must say "not reported" and
carry no estimate, in the tables, their CSV files and the HTML.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from align_core.experiments.ab_results import ingest_export
from align_core.experiments.config import ExperimentConfig, register_experiment_config
from align_core.stimuli.plans import DEFAULT_VARIANTS, parse_variants
from align_demo.ab_simulator import simulate_ab_rows
from analysis.report import build_report

MAPPING = """
name: lab_named
columns:
  ad_name: {column: ad_name, template: "{experiment}__{video}__{variant}"}
  date: date
  impressions: impressions
  clicks: clicks
  spend: spend
not_reported: [avg_watch_time_s, conversions]
"""
CHECKED = {
    "videos": ("analysis_lift", "analysis_lift_complete_block", "analysis_timing", "analysis_arms_test"),
    "single creative": ("analysis_lift", "analysis_arms_test"),
}


def _lab_export(path: Path, rows: pd.DataFrame) -> Path:
    """The simulated rows as a lab's ad-level sheet that reports neither conversions nor watch time."""
    sheet = pd.DataFrame(
        {
            "ad_name": rows["experiment_id"] + "__" + rows["video_id"] + "__" + rows["variant"],
            "date": rows["date"],
            "impressions": rows["impressions"],
            "clicks": rows["clicks"],
            "spend": rows["spend"],
        }
    )
    sheet.to_csv(path, index=False)
    return path


def _report(tmp_path: Path, experiment: ExperimentConfig, rows: pd.DataFrame):
    db = tmp_path / "warehouse.duckdb"
    register_experiment_config(db, experiment)
    (tmp_path / "lab.yaml").write_text(MAPPING)
    report = ingest_export(_lab_export(tmp_path / "lab.csv", rows), db, mapping=str(tmp_path / "lab.yaml"))
    assert report.ok, report.errors
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ab_results WHERE conversions IS NOT NULL").fetchone() == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_report(db, tmp_path / "report")


def _assert_says_not_reported(report, out: Path, tables: tuple[str, ...]) -> None:
    for name in tables:
        table = report.tables.get(name, pd.DataFrame())
        rows = table[table["metric"].isin(["cvr", "watch_time"])] if "metric" in table else table
        assert len(rows), name
        notes = rows["note"].fillna("")
        assert notes.str.startswith("not reported: the export does not report").all(), (name, notes.tolist())
        numbers = [c for c in ("baseline_num", "variant_num", "rel_lift", "p_value", "statistic") if c in rows]
        assert rows[numbers].isna().all().all(), (name, rows[numbers])  # no invented 0, no estimate
        assert "not reported" in (out / "tables" / f"{name}.csv").read_text()
    html = (out / "report.html").read_text()
    assert "not reported: the export does not report conversions" in html
    assert not re.search(r"\b(nan|NaN)\b", html)
    ctr = report.tables["analysis_lift"].query("metric == 'ctr'")
    assert ctr["rel_lift"].notna().all() and (ctr["note"].fillna("") == "").all()  # CTR is reported


@pytest.mark.parametrize("design", ["videos", "single creative"])
def test_not_reported_fields_give_rows_that_say_so(design: str, tmp_path: Path) -> None:
    if design == "videos":
        videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(6)], "industry": ["a", "a", "b", "b", "c", "c"]})
        experiment = ExperimentConfig("lab-exp", DEFAULT_VARIANTS)
        rows = simulate_ab_rows(videos, seed=1, days=2, segments=("all",), experiment_id="lab-exp")
    else:  # one ad per arm, no video seen in two arms
        arms = parse_variants([{"name": "baseline", "kind": "identity"}, {"name": "creative_b", "kind": "creative"}])
        experiment = ExperimentConfig("lab-exp", arms)
        videos = pd.DataFrame({"video_id": ["ad1", "ad2"], "industry": "all"})
        rows = simulate_ab_rows(videos, seed=2, days=2, segments=("all",), experiment_id="lab-exp", variants=arms)
        rows = rows[(rows["video_id"] == "ad1") == (rows["variant"] == "baseline")]
    _assert_says_not_reported(_report(tmp_path, experiment, rows), tmp_path / "report", CHECKED[design])
