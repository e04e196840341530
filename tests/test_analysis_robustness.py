"""Real export shapes that used to crash or mislead: zero, saturated and single-arm cells.

Each reproduces what issue 14 reported (before the fix: ``LinAlgError: SVD did not converge``
in timing_contrasts with all-zero conversions, ``ZeroDivisionError`` in fit_interaction_glm on a
saturated design, a Wald p of 1.000 from an all-zero conversion GLM) and checks that a row now
says what cannot be estimated and why.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.heterogeneity import NotEstimable, fit_interaction_glm, heterogeneity_tables
from analysis.lift import arms_chi_square, lift_table
from analysis.report import build_report
from analysis.timing import timing_contrasts

VARIANTS = ("baseline", "early_boost", "middle_boost", "late_boost")


def _cells(n_videos: int = 8, seed: int = 0, conversions: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_videos):
        for v in VARIANTS:
            clicks = int(rng.binomial(2000, 0.03))
            rows.append(
                {
                    "video_id": f"v{i}",
                    "variant": v,
                    "industry": ("beauty", "food")[i % 2],
                    "impressions": 2000,
                    "clicks": clicks,
                    "conversions": int(rng.binomial(clicks, 0.1)) if conversions else 0,
                    "watch_time_s_sum": 9000.0,
                    "watch_time_s_sumsq": 60000.0,
                }
            )
    return pd.DataFrame(rows)


def test_timing_with_all_zero_conversions_gives_rows_not_linalg_error() -> None:
    table = timing_contrasts(_cells(conversions=False), "cvr")
    assert len(table) == 4 and table["p_value"].isna().all()
    assert table["note"].str.startswith("not estimable").all()
    assert "0 conversions" in table["note"].iat[0]


def test_all_zero_conversion_glm_says_not_estimable_instead_of_p_one() -> None:
    cells = _cells(conversions=False)
    with pytest.raises(NotEstimable, match="no conversions in any cell"):
        fit_interaction_glm(cells, "cvr")
    _, tests = heterogeneity_tables(cells)
    cvr = tests[(tests["metric"] == "cvr") & (tests["test"] == "glm_interaction_wald")].iloc[0]
    assert np.isnan(cvr["p_value"]) and cvr["note"].startswith("not estimable: no conversions")


def test_saturated_glm_is_a_row_not_zero_division() -> None:
    """Two videos in two industries: 8 cells for 8 parameters (statsmodels divided by nobs - k = 0)."""
    cells = _cells(n_videos=2)
    with pytest.raises(NotEstimable, match="saturated: 8 video x variant cells for 8 parameters"):
        fit_interaction_glm(cells, "ctr")
    _, tests = heterogeneity_tables(cells)
    assert tests[tests["test"] == "glm_interaction_wald"]["note"].str.contains("saturated").all()


def test_separated_cells_are_named() -> None:
    cells = _cells()
    cells.loc[(cells["industry"] == "beauty") & (cells["variant"] == "early_boost"), "clicks"] = 0
    cells["conversions"] = np.minimum(cells["conversions"], cells["clicks"])
    with pytest.raises(NotEstimable, match=r"early_boost x beauty \(0 clicks\)"):
        fit_interaction_glm(cells, "ctr")
    all_clicks = _cells()
    all_clicks.loc[all_clicks["industry"] == "food", "clicks"] = 2000
    with pytest.raises(NotEstimable, match="all clicks"):
        fit_interaction_glm(all_clicks, "ctr")


def test_lift_rows_for_zero_and_single_arm_cells() -> None:
    cells = _cells(conversions=False)
    cvr = lift_table(cells, metrics=("cvr",))
    assert cvr["note"].str.contains("no conversions in either arm").all() and cvr["p_value"].isna().all()
    zero_arm = _cells()
    zero_arm.loc[zero_arm["variant"] == "late_boost", ["clicks", "conversions"]] = 0
    row = lift_table(zero_arm, metrics=("ctr",)).set_index("variant").loc["late_boost"]
    assert row["abs_lift"] < 0 and np.isfinite(row["abs_se"])  # the absolute lift is still estimable
    assert np.isnan(row["p_value"]) and "late_boost has 0 clicks" in row["note"]
    single = lift_table(_cells(n_videos=1), metrics=("ctr",))
    assert single["note"].str.contains("fewer than 2 clusters").all()


def test_chi_square_across_arms_matches_scipy_and_flags_clustering() -> None:
    cells = _cells(n_videos=40, seed=3)
    cells.loc[cells["variant"] == "early_boost", "clicks"] += 12
    out = arms_chi_square(cells, "ctr").set_index("test")
    totals = cells.groupby("variant")[["clicks", "impressions"]].sum()
    table = np.column_stack([totals["clicks"], totals["impressions"] - totals["clicks"]])
    ref = stats.chi2_contingency(table, correction=False)
    assert out.loc["pearson", "statistic"] == pytest.approx(ref.statistic, rel=1e-12)
    assert out.loc["pearson", "df"] == 3 and out.loc["pearson", "p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert out.loc["cluster", "df"] == 3 and "Wald" in out.loc["cluster", "method"]
    few = arms_chi_square(cells[cells["video_id"].isin([f"v{i}" for i in range(6)])], "ctr").set_index("test")
    assert "Hotelling F(3, 3)" in few.loc["cluster", "method"] and 0 < few.loc["cluster", "p_value"] <= 1
    none = arms_chi_square(_cells(conversions=False), "cvr")
    assert none["note"].str.contains("no conversions in any arm").all()


def test_report_never_crashes_on_a_valid_export_with_zero_conversions(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    cells = _cells(n_videos=4, conversions=False)
    con = duckdb.connect(str(db))
    con.register("c", cells.assign(experiment_id="zero-cvr"))
    con.execute(
        "CREATE TABLE ab_results AS SELECT experiment_id, video_id, variant, impressions, clicks, conversions, "
        "0.0::DOUBLE AS spend, watch_time_s_sum, watch_time_s_sumsq FROM c"
    )
    con.register("v", cells[["video_id", "industry"]].drop_duplicates())
    con.execute("CREATE TABLE videos AS SELECT * FROM v")
    con.close()
    report = build_report(db, tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "not estimable" in page
    timing = report.tables["analysis_timing"]
    assert timing[timing["metric"] == "cvr"]["note"].str.startswith("not estimable").all()


def test_single_video_industry_gets_a_row_saying_why() -> None:
    from analysis.heterogeneity import industry_lifts

    cells = _cells(n_videos=5)  # beauty: v0, v2, v4; food: v1, v3
    cells.loc[cells["video_id"] == "v4", "industry"] = "tech"
    table = industry_lifts(cells, "ctr")
    tech = table[table["industry"] == "tech"]
    assert len(tech) == 3 and tech["note"].str.contains("1 video").all() and tech["p_value"].isna().all()
    assert table[table["industry"] != "tech"]["p_holm"].notna().all()
