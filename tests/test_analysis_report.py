"""End to end: simulate -> ingest -> build_report / align-report; planted effects recovered."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from align_core.experiments.ab_results import ingest_export
from align_core.stimuli.plans import DEFAULT_VARIANTS, variant_names
from align_demo.ab_simulator import SimulationEffects, planted_truth, simulate_ab_export
from analysis.cli import main
from analysis.report import TABLES, build_report
from analysis.timing import VARIANT_WINDOW

INDUSTRIES = ("beauty", "food", "tech")
EFFECTS = SimulationEffects(industry_modifier={"beauty": 1.8, "tech": 0.4}, ctr_dose_slope=0.5)


def _videos(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"video_id": [f"72280233523969{i:05d}" for i in range(n)], "industry": [INDUSTRIES[i % 3] for i in range(n)]}
    )


def _seed_warehouse(db: Path, videos: pd.DataFrame, deltas: pd.DataFrame | None = None) -> None:
    con = duckdb.connect(str(db))
    con.register("v", videos)
    con.execute("CREATE TABLE videos AS SELECT video_id, industry FROM v")
    if deltas is not None:
        con.register("d", deltas)
        con.execute("CREATE TABLE manipulation_check AS SELECT * FROM d")
        rng = np.random.default_rng(1)
        scenes = pd.DataFrame(
            {
                "video_id": np.repeat(videos["video_id"], 3).to_numpy(),
                "industry": np.repeat(videos["industry"], 3).to_numpy(),
                "attention_proportion": rng.uniform(0, 1, 3 * len(videos)),
                "contrast": rng.normal(0, 1, 3 * len(videos)),
                "brightness": rng.normal(0, 1, 3 * len(videos)),
            }
        )
        scenes["ctr_mean"] = 0.02 + 0.01 * scenes["attention_proportion"] + rng.normal(0, 0.003, len(scenes))
        scenes["cvr_mean"] = 0.05 + rng.normal(0, 0.01, len(scenes))
        con.register("s", scenes)
        con.execute("CREATE TABLE scenes AS SELECT * FROM s")
    con.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """A demo-sized experiment: 60 videos x 7 variants x 7 days x 4 segments (~8.8M impressions)."""
    root = tmp_path_factory.mktemp("demo")
    db, inbox = root / "warehouse.duckdb", root / "inbox"
    videos = _videos(60)
    rng = np.random.default_rng(3)
    deltas = pd.DataFrame(
        [
            (v, var, VARIANT_WINDOW[var], rng.uniform(0.0, 0.4))
            for v in videos["video_id"]
            for var in variant_names(DEFAULT_VARIANTS)[1:]
        ],
        columns=["video_id", "variant", "window", "achieved_delta"],
    )
    _seed_warehouse(db, videos, deltas)
    export = simulate_ab_export(videos, inbox / "demo.csv", EFFECTS, seed=11, achieved_delta=deltas)
    assert ingest_export(export, db, register=True).ok
    out = root / "report"
    assert main(["--database", str(db), "--out", str(out)]) == 0
    return db, out, videos


def _read(db: Path, table: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table}").df()
    finally:
        con.close()


def test_planted_effects_recovered(demo: tuple[Path, Path, pd.DataFrame]) -> None:
    db, _, videos = demo
    lift = _read(db, "analysis_lift")
    deltas = _read(db, "manipulation_check")
    truth = planted_truth(videos, EFFECTS, deltas)  # includes the planted dose term
    assert truth["ctr"]["placebo"] > 0.05  # the dose alone lifts every arm with a positive delta
    covered95, covered999, total = 0, 0, 0
    for metric in ("ctr", "cvr", "watch_time"):
        for row in lift[lift["metric"] == metric].itertuples():
            true = truth[metric][row.variant]
            crit = stats.t.ppf(1 - 0.0005, row.n_videos - 1)
            lo, hi = np.exp(row.log_ratio - crit * row.log_se) - 1, np.exp(row.log_ratio + crit * row.log_se) - 1
            covered95 += row.rel_ci_low <= true <= row.rel_ci_high
            covered999 += lo <= true <= hi
            total += 1
    print(f"planted effects inside 95% CIs: {covered95}/{total}; inside 99.9% CIs: {covered999}/{total}")
    assert total == 18 and covered999 == total and covered95 >= 15

    timing = _read(db, "analysis_timing")
    early_late = timing[(timing["metric"] == "ctr") & (timing["contrast"] == "early_boost vs late_boost")].iloc[0]
    assert early_late["ratio_ci_low"] > 1.0  # early beats late, as planted (12% vs 3%)

    dose = _read(db, "analysis_dose_response")
    ctr_dose = dose[dose["metric"] == "ctr"].iloc[0]
    assert ctr_dose["ci_low"] < 0.5 < ctr_dose["ci_high"]

    het = _read(db, "analysis_heterogeneity")
    wald = het[(het["test"] == "glm_interaction_wald") & (het["metric"] == "ctr")].iloc[0]
    assert wald["p_value"] < 0.01  # industry modifiers 1.8 / 1.0 / 0.4 are detected
    ind = het[(het["kind"] == "industry_lift") & (het["metric"] == "ctr") & (het["variant"] == "full_boost")]
    for row in ind.itertuples():
        true = truth["ctr_by_industry"][row.industry]["full_boost"]
        crit = stats.t.ppf(1 - 0.0005, row.n_videos - 1)
        assert np.exp(row.log_ratio - crit * row.log_se) - 1 <= true <= np.exp(row.log_ratio + crit * row.log_se) - 1

    guard = _read(db, "analysis_guardrails")
    srm = guard[guard["check"] == "sample_ratio_mismatch"].iloc[0]
    assert not srm["flagged"]


def test_report_outputs_and_idempotent(demo: tuple[Path, Path, pd.DataFrame]) -> None:
    db, out, _ = demo
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # lift forest, industry forest, timing
    assert "Observational scene model" in page
    before = {t: _read(db, t) for t in TABLES if t != "analysis_excluded"}  # no variants table here
    assert all(len(frame) for frame in before.values())
    moderators = set(before["analysis_meta"]["term"].dropna())
    assert {"intercept", "achieved_delta", "mean_contrast"} <= moderators  # pooled industries + two meta-regressions
    report = build_report(db, out)
    assert report.headline_markdown.startswith("**demo-exp-1**")
    assert "| full_boost |" in report.headline_markdown
    assert (out / "headline.md").read_text().strip() == report.headline_markdown.strip()
    for table, frame in before.items():
        pd.testing.assert_frame_equal(frame, _read(db, table))


def test_srm_flagged_when_delivery_is_skewed(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    videos = _videos(12)
    _seed_warehouse(db, videos)
    effects = SimulationEffects(served_share_bias={"early_boost": 0.9})
    export = simulate_ab_export(
        videos, tmp_path / "inbox" / "skew.parquet", effects, seed=2, days=2, segments=["all"], impressions_per_arm=5000
    )
    assert ingest_export(export, db, register=True).ok
    report = build_report(db, tmp_path / "out")
    srm = report.tables["analysis_guardrails"]
    assert bool(srm[srm["check"] == "sample_ratio_mismatch"]["flagged"].iat[0])
    assert "SRM FLAGGED" in report.headline_markdown
    assert "early_boost" in srm["detail"].iat[0]


def test_report_without_results_and_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "w.duckdb"
    _seed_warehouse(db, _videos(3))
    report = build_report(db, tmp_path / "out")
    assert "no A/B results" in " ".join(report.notes)
    assert report.headline_markdown == "_No A/B results to report._"
    assert (tmp_path / "out" / "report.html").exists()
    assert main(["--database", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _few_video_warehouse(db: Path, n_per_industry: int = 2, seed: int = 0) -> pd.DataFrame:
    """A small real-shaped experiment: 2 videos in each of 3 industries, 7 arms, binomial counts."""
    rng = np.random.default_rng(seed)
    lifts = {
        "baseline": 0.0,
        "early_boost": 0.12,
        "middle_boost": 0.07,
        "late_boost": 0.03,
        "full_boost": 0.15,
        "reduction": -0.06,
        "placebo": 0.0,
    }
    rows, videos, deltas = [], [], []
    for i in range(3 * n_per_industry):
        vid, industry = f"a1b2c3d4e5f6a7b8c9d0e{i:03x}", INDUSTRIES[i % 3]
        videos.append((vid, industry))
        base = 0.02 * np.exp(rng.normal(0, 0.3))
        reach = int(rng.integers(20_000, 80_000))  # the platform splits each video's reach evenly over arms
        for variant, lift in lifts.items():
            imp = int(rng.poisson(reach))
            clicks = int(rng.binomial(imp, min(base * (1 + lift), 1)))
            watch = imp * 8.0 * (1 + lift / 4) * float(np.exp(rng.normal(0, 0.05)))
            rows.append(
                (
                    f"exp-{n_per_industry}",
                    vid,
                    variant,
                    imp,
                    clicks,
                    int(rng.binomial(clicks, 0.05)),
                    0.0,
                    watch,
                    90.0 * imp,
                )
            )
            if variant != "baseline":
                deltas.append((vid, variant, VARIANT_WINDOW[variant], float(rng.uniform(0, 0.4))))
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE ab_results (experiment_id VARCHAR, video_id VARCHAR, variant VARCHAR, impressions BIGINT, "
        "clicks BIGINT, conversions BIGINT, spend DOUBLE, watch_time_s_sum DOUBLE, watch_time_s_sumsq DOUBLE)"
    )
    con.executemany("INSERT INTO ab_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TABLE videos (video_id VARCHAR, industry VARCHAR)")
    con.executemany("INSERT INTO videos VALUES (?, ?)", videos)
    con.execute(
        'CREATE TABLE manipulation_check (video_id VARCHAR, variant VARCHAR, "window" VARCHAR, achieved_delta DOUBLE)'
    )
    con.executemany("INSERT INTO manipulation_check VALUES (?, ?, ?, ?)", deltas)
    con.close()
    return pd.DataFrame(videos, columns=["video_id", "industry"])


def test_small_experiment_report_is_reviewable(tmp_path: Path) -> None:
    """6 videos, 2 per industry: HTML headline table, model + correction per table, industry rows,
    meta-analysis rows, small-sample notes, and no joint test with p = 0."""
    db = tmp_path / "w.duckdb"
    _few_video_warehouse(db)
    report = build_report(db, tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<table class='t headline'>" in page and "<pre>" not in page
    assert page.count("<p class='model'>Model:") >= len(TABLES)
    assert "Small-sample notes" in page and "CR2 (Bell-McCaffrey)" in page
    lift = report.tables["analysis_lift"]
    assert (lift["se_method"].str.startswith("CR2")).all() and (lift["df"] < 6).all()
    het = report.tables["analysis_heterogeneity"]
    industry = het[het["kind"] == "industry_lift"]
    assert set(industry["industry"]) == set(INDUSTRIES) and (industry["n_videos"] == 2).all()
    meta = report.tables["analysis_meta"]
    pooled = meta[(meta["analysis"] == "industries pooled") & (meta["level"] != "videos")]
    assert meta["recommended"].eq(True).any()  # the video-level row the page tells a reader to read
    assert {"DL", "REML"} <= set(pooled["method"]) and (pooled["k"] == 3).all()
    assert (pooled["ci_low"] <= pooled["estimate"]).all() and pooled["i2"].between(0, 100).all()
    assert meta["analysis"].str.startswith("meta-regression of per-video lifts on achieved_delta").any()
    timing = report.tables["analysis_timing"]
    joint = timing[timing["contrast"].str.startswith("joint")]
    assert (joint["p_value"] > 1e-12).all() and joint["se_method"].str.contains("Hotelling F").all()
    arms = report.tables["analysis_arms_test"]
    assert set(arms["test"]) == {"pearson", "cluster"}
    assert any("6 videos" in n for n in report.notes)
    srm = report.tables["analysis_guardrails"]
    assert not srm[srm["check"] == "sample_ratio_mismatch"]["flagged"].any()


def test_cli_takes_the_design(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    _few_video_warehouse(db)
    assert main(["--database", str(db), "--out", str(tmp_path / "o"), "--design", "paired"]) == 0
    with pytest.raises(ValueError, match="more than one arm"):
        build_report(db, tmp_path / "o2", design="unpaired")  # every video ran in every arm: not unpaired


def test_ineligible_variants_are_left_out_and_listed(tmp_path: Path) -> None:
    """The variants table's eligible / exclusion_reason (issue 15's contract) decide what is analysed."""
    db = tmp_path / "w.duckdb"
    videos = _few_video_warehouse(db)
    first = videos["video_id"].iat[0]
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE variants (video_id VARCHAR, variant VARCHAR, eligible BOOLEAN, exclusion_reason VARCHAR)")
    con.executemany(
        "INSERT INTO variants VALUES (?, ?, ?, ?)",
        [
            (first, "early_boost", False, "manipulation check failed: early alignment moved 0.004 < 0.02"),
            (first, "late_boost", False, "not manipulable: no product frames in late window"),
            (first, "baseline", True, None),
        ],
    )
    con.close()
    report = build_report(db, tmp_path / "out")
    excluded = report.tables["analysis_excluded"].set_index("variant")
    assert excluded.loc["early_boost", "action"] == "results dropped from the analysis"
    assert excluded.loc["early_boost", "exclusion_reason"].startswith("manipulation check failed")
    lift = report.tables["analysis_lift"].set_index(["metric", "variant"])
    assert lift.loc[("ctr", "early_boost"), "variant_den"] < lift.loc[("ctr", "middle_boost"), "variant_den"] * 0.95
    assert "Excluded variants" in (tmp_path / "out" / "report.html").read_text()
    assert any("left out" in n for n in report.notes)
    kept = build_report(db, tmp_path / "out2", include_ineligible=True, write_to_warehouse=False)
    assert (kept.tables["analysis_excluded"]["action"] == "kept: include_ineligible override").all()
