"""Matched contrasts: with arms missing for some videos, every lift uses only the videos where
both the arm and the control ran (issue 22), and says how many."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from align_core.experiments.ab_results import ingest_export
from align_demo.ab_simulator import SimulationEffects, simulate_ab_rows
from analysis.guardrails import srm_test
from analysis.matched import complete_block_cells, fixed_effects_glm, matched_cells
from analysis.preregistration import eligibility_deviations
from analysis.report import build_report

# arm -> videos (by index) it is missing from; the missing ones have a lower baseline CTR
MISSING = {"late_boost": range(0, 6), "full_boost": range(0, 6), "early_boost": range(0, 4), "reduction": (1, 3)}


def _videos(n: int = 9) -> pd.DataFrame:
    return pd.DataFrame({"video_id": [f"72280233523969{i:05d}" for i in range(n)], "industry": "food"})


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine videos, some arms missing in up to six of them; the low-CTR videos lose arms."""
    root = tmp_path_factory.mktemp("matched")
    videos = _videos()
    rows = simulate_ab_rows(videos, SimulationEffects(video_sd_logit=0.6), seed=4, days=2, impressions_per_arm=2000)
    # a strong composition effect: the videos that lose arms get half the clicks in every arm
    low = rows["video_id"].isin(videos["video_id"].iloc[:6])
    rows.loc[low, "clicks"] //= 2
    rows.loc[low, "conversions"] = np.minimum(rows.loc[low, "conversions"], rows.loc[low, "clicks"])
    for arm, idx in MISSING.items():
        gone = rows["variant"].eq(arm) & rows["video_id"].isin(videos["video_id"].iloc[list(idx)])
        rows = rows[~gone]
    export = root / "export.csv"
    rows.to_csv(export, index=False)
    db = root / "warehouse.duckdb"
    assert ingest_export(export, db, register=True).ok
    return db


def _matched_ratio_of_sums(db: Path, arm: str) -> tuple[float, int]:
    """CTR(arm) / CTR(control) - 1 over the videos where both ran, straight from ab_results."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rel, n = con.execute(
            """
            WITH v AS (SELECT video_id, variant, sum(clicks) c, sum(impressions) i FROM ab_results
                       WHERE variant IN ('baseline', ?) GROUP BY ALL HAVING sum(impressions) > 0),
                 m AS (SELECT video_id FROM v GROUP BY video_id HAVING count(DISTINCT variant) = 2)
            SELECT (sum(c) FILTER (WHERE variant = ?) / sum(i) FILTER (WHERE variant = ?))
                 / (sum(c) FILTER (WHERE variant = 'baseline') / sum(i) FILTER (WHERE variant = 'baseline')) - 1,
                   count(DISTINCT video_id)
            FROM v WHERE video_id IN (SELECT video_id FROM m)
            """,
            [arm, arm, arm],
        ).fetchone()
    finally:
        con.close()
    return float(rel), int(n)


def test_every_lift_is_the_matched_ratio_of_sums(warehouse: Path, tmp_path: Path) -> None:
    report = build_report(warehouse, tmp_path / "report")
    lift = report.tables["analysis_lift"]
    ctr = lift[lift["metric"] == "ctr"].set_index("variant")
    for arm in ("early_boost", "middle_boost", "late_boost", "full_boost", "reduction", "placebo"):
        expected, n = _matched_ratio_of_sums(warehouse, arm)
        assert ctr.loc[arm, "rel_lift"] == pytest.approx(expected, rel=1e-9, abs=1e-12), arm
        assert ctr.loc[arm, "n_videos"] == n == 9 - len(MISSING.get(arm, ()))
        assert ctr.loc[arm, "n_videos_control"] == 9
    # the headline names each arm's matched videos
    assert "| late_boost | 3 of 9 |" in report.headline_markdown
    # the complete-block alternative uses the 3 videos with every arm
    block = report.tables["analysis_lift_complete_block"]
    assert set(block["n_videos"]) == {3}


def test_timing_contrasts_use_the_videos_both_arms_ran(warehouse: Path, tmp_path: Path) -> None:
    timing = build_report(warehouse, tmp_path / "r", write_to_warehouse=False).tables["analysis_timing"]
    ctr = timing[timing["metric"] == "ctr"].set_index("contrast")
    assert ctr.loc["early_boost vs middle_boost", "n_videos"] == 5
    assert ctr.loc["early_boost vs late_boost", "n_videos"] == 3
    joint = ctr[ctr.index.str.startswith("joint")]
    assert int(joint["n_videos"].iat[0]) == 3


def test_matched_and_complete_block_cells() -> None:
    cells = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b", "c", "c", "c"],
            "variant": ["baseline", "x", "baseline", "y", "baseline", "x", "y"],
            "impressions": [10, 10, 10, 10, 10, 10, 0],
        }
    )
    assert sorted(matched_cells(cells, ["baseline", "x"])["video_id"].unique()) == ["a", "c"]
    assert sorted(matched_cells(cells, ["baseline", "y"])["video_id"].unique()) == ["b"]  # c's y did not run
    assert complete_block_cells(cells).empty


def test_fixed_effects_glm_recovers_a_common_rate_ratio() -> None:
    """Every video has CTR ratio exactly 1.2: the FE GLM's rate ratio is 1.2 whatever the video mix."""
    base = np.array([0.01, 0.02, 0.04, 0.03])
    n = np.array([100_000, 50_000, 20_000, 80_000])
    cells = pd.DataFrame(
        {
            "video_id": np.tile(["a", "b", "c", "d"], 2),
            "variant": ["baseline"] * 4 + ["x"] * 4,
            "impressions": np.tile(n, 2),
            "clicks": np.r_[base * n, 1.2 * base * n[::-1][::-1]],
        }
    )
    out = fixed_effects_glm(cells, "x", "baseline", "clicks", "impressions")
    assert out["glm_rel_lift"] == pytest.approx(0.2, rel=1e-6)


def test_srm_does_not_fire_on_eligibility_but_does_on_skewed_delivery(warehouse: Path, tmp_path: Path) -> None:
    """Arms missing from some videos leave the arms' totals unequal; within each video the split is
    balanced, so the SRM test (served vs planned share among the arms each video ran) is quiet. A
    within-video delivery skew of 3 % on one arm is flagged."""
    report = build_report(warehouse, tmp_path / "r", write_to_warehouse=False)
    srm = report.tables["analysis_guardrails"].set_index("check").loc["sample_ratio_mismatch"]
    assert not srm["flagged"] and srm["p_value"] > 0.001
    assert srm["df"] == 9 * 6 - sum(len(v) for v in MISSING.values())  # sum over videos of (arms ran - 1)
    assert "no sample-ratio mismatch" in report.headline_markdown

    rows = simulate_ab_rows(
        _videos(), SimulationEffects(served_share_bias={"placebo": 1.03}), seed=5, days=3, impressions_per_arm=4000
    )
    arms = rows.groupby(["experiment_id", "video_id", "variant"], as_index=False).agg(
        impressions=("impressions", "sum"), planned_share=("planned_share", "first")
    )
    assert bool(srm_test(arms)["flagged"].iat[0])


def test_eligibility_exclusions_are_plan_deviations() -> None:
    cells = pd.DataFrame({"video_id": ["a", "b"], "variant": ["baseline", "baseline"]})
    excluded = pd.DataFrame(
        {
            "video_id": ["a", "b", "z"],
            "variant": ["late_boost", "late_boost", "late_boost"],
            "exclusion_reason": ["unreachable: late", "not manipulable: x", "unreachable: y"],
            "action": "not in the A/B results",
        }
    )
    (line,) = eligibility_deviations(cells, excluded)
    assert "'late_boost' not analysed in 2 video(s)" in line and "unreachable (1)" in line


def _industry_cells() -> pd.DataFrame:
    """Three industries of 3 videos; late_boost runs in one beauty video only; 'unknown' has 3 videos."""
    videos = pd.DataFrame(
        {
            "video_id": [f"72280233523969{i:05d}" for i in range(12)],
            "industry": ["beauty"] * 3 + ["food"] * 3 + ["tech"] * 3 + ["unknown"] * 3,
        }
    )
    rows = simulate_ab_rows(videos, SimulationEffects(), seed=8, days=2, impressions_per_arm=3000)
    late_gone = rows["variant"].eq("late_boost") & ~rows["video_id"].eq(videos["video_id"].iat[0])
    rows = rows[~late_gone]
    cells = rows.groupby(["video_id", "variant"], as_index=False)[
        ["impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq"]
    ].sum()
    return cells.merge(videos, on="video_id")


def test_subgroup_rows_with_one_video_have_no_estimate() -> None:
    from analysis.heterogeneity import industry_lifts

    table = industry_lifts(_industry_cells(), "ctr")
    late = table[table["variant"] == "late_boost"].set_index("industry")
    assert late.loc["beauty", "n_videos"] == 1
    assert late.loc["beauty", "note"].startswith("not estimable: 1 video(s)")
    assert late[["rel_lift", "rel_ci_low", "log_se", "p_value", "df"]].isna().all().all()
    assert table[table["n_videos"] < 2]["rel_lift"].isna().all()


def test_pooling_skips_unknown_and_unestimable_and_says_which_row_to_read() -> None:
    from analysis.heterogeneity import industry_lifts
    from analysis.meta import pool_industries
    from analysis.timing import video_variant_log_lifts

    cells = _industry_cells()
    table = industry_lifts(cells, "ctr")
    video = video_variant_log_lifts(cells, "ctr").assign(metric="ctr")
    pooled = pool_industries(table, video_lifts=video)
    early = pooled[pooled["variant"] == "early_boost"]
    assert (early[early["level"] != "videos"]["k"] == 3).all()  # beauty, food, tech; not 'unknown'
    rec = early[early["recommended"].eq(True)]
    assert len(rec) == 1 and rec["k"].iat[0] == 9  # the 9 videos of the pooled industries
    with_unknown = pool_industries(table, include_unknown=True)
    assert (with_unknown[with_unknown["variant"] == "early_boost"]["k"] == 4).all()
    late = pooled[pooled["variant"] == "late_boost"].iloc[0]
    assert late["note"].startswith("not estimable: 0 estimable industry lift(s)")


def test_truncated_knapp_hartung_is_never_narrower_than_the_model_se() -> None:
    from analysis.meta import random_effects

    y, v = np.array([0.10, 0.101, 0.099, 0.1005]), np.array([0.01, 0.012, 0.011, 0.009])  # Q << df
    z = random_effects(y, v, method="REML", test="z")
    plain = random_effects(y, v, method="REML", test="knha")
    trunc = random_effects(y, v, method="REML", test="knha_trunc")
    assert plain.se < 0.2 * z.se  # the untruncated scale shrinks the SE five-fold and more
    assert trunc.se == pytest.approx(z.se, rel=1e-12)


def test_report_first_screen_and_csv_appendix(warehouse: Path, tmp_path: Path) -> None:
    """Headline table, forest plot and methods paragraph come first; wide tables go to an appendix
    with every column in a CSV beside the HTML."""
    out = tmp_path / "report"
    report = build_report(warehouse, out, write_to_warehouse=False)
    page = (out / "report.html").read_text()
    headline, forest, methods, appendix = (
        page.index("<table class='t headline'>"),
        page.index("lift forest plot"),
        page.index("<h2>Methods</h2>"),
        page.index("Appendix: every table"),
    )
    assert headline < forest < methods < page.index("Pre-registration") < appendix
    assert "matched contrasts" in page[methods:appendix] and "CR2" in page[methods:appendix]
    lift_csv = pd.read_csv(out / "tables" / "analysis_lift.csv")
    assert list(lift_csv.columns) == list(report.tables["analysis_lift"].columns)
    assert "iid_z" in lift_csv.columns and "iid_z" not in page[appendix:]  # wide columns: CSV only
    assert 'href="tables/analysis_lift.csv"' in page
