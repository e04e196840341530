"""The analysis statistics against independent computations (statsmodels fits, scipy, closed
forms and published textbook values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from scipy.stats.contingency import chi2_contingency

from align_demo.ab_simulator import SimulationEffects, simulate_ab_rows
from analysis.guardrails import design_effect, mde_relative, planning_table, required_impressions, srm_test
from analysis.heterogeneity import cochran_q, fit_interaction_glm, industry_lifts, interaction_wald
from analysis.lift import lift_table
from analysis.timing import dose_response, timing_contrasts

SUMS = ["impressions", "clicks", "conversions", "spend", "watch_time_s_sum", "watch_time_s_sumsq"]


def _cells(rows: pd.DataFrame, industry: dict[str, str] | None = None) -> pd.DataFrame:
    cells = rows.groupby(["video_id", "variant"], as_index=False)[SUMS].sum()
    cells["industry"] = cells["video_id"].map(industry) if industry else "all"
    return cells


def _videos(n: int, industries: tuple[str, ...] = ("all",)) -> pd.DataFrame:
    return pd.DataFrame(
        {"video_id": [f"v{i:03d}" for i in range(n)], "industry": [industries[i % len(industries)] for i in range(n)]}
    )


def test_agresti_aspirin_example() -> None:
    """Physicians' Health Study (Agresti, An Introduction to Categorical Data Analysis, 2nd ed.,
    Sec. 2.2): myocardial infarction 189/11034 on placebo vs 104/11037 on aspirin; difference of
    proportions 0.0077 with 95% CI (0.005, 0.011), relative risk 1.82 with 95% CI (1.43, 2.30).
    With every subject its own cluster the ratio estimator's linearised variance is the binomial
    one, so the lift table must reproduce the published numbers."""
    n_p, y_p, n_a, y_a = 11034, 189, 11037, 104
    ids = [f"p{i}" for i in range(n_p)] + [f"a{i}" for i in range(n_a)]
    variant = ["early_boost"] * n_p + ["baseline"] * n_a
    clicks = np.r_[np.ones(y_p), np.zeros(n_p - y_p), np.ones(y_a), np.zeros(n_a - y_a)]
    cells = pd.DataFrame(
        {
            "video_id": ids,
            "variant": variant,
            "impressions": 1,
            "clicks": clicks,
            "conversions": 0,
            "watch_time_s_sum": 0.0,
            "watch_time_s_sumsq": 0.0,
            "industry": "all",
        }
    )
    row = lift_table(cells, metrics=("ctr",)).iloc[0]
    assert row["abs_lift"] == pytest.approx(0.0077, abs=5e-5)
    assert row["abs_se"] == pytest.approx(0.0015, abs=5e-5)
    assert (round(row["abs_ci_low"], 3), round(row["abs_ci_high"], 3)) == (0.005, 0.011)
    assert round(1 + row["rel_lift"], 2) == 1.82
    # the Katz log-scale interval is (1.4339, 2.3059): the book prints 2.30, so compare to 0.01
    assert 1 + row["rel_ci_low"] == pytest.approx(1.43, abs=0.005)
    assert 1 + row["rel_ci_high"] == pytest.approx(2.30, abs=0.01)
    # two-proportion z-test: z^2 equals Pearson's chi-square from scipy (no continuity correction)
    chi2 = chi2_contingency(np.array([[y_p, n_p - y_p], [y_a, n_a - y_a]]), correction=False)[0]
    assert row["iid_z"] ** 2 == pytest.approx(chi2, rel=1e-9)
    assert chi2 == pytest.approx(25.01, abs=0.01)  # Agresti's Pearson X^2 for this table


@pytest.fixture(scope="module")
def two_arm_cells() -> pd.DataFrame:
    rows = simulate_ab_rows(_videos(30), seed=3, days=1, segments=["all"], variants=["baseline", "full_boost"])
    return _cells(rows)


def test_ratio_estimator_matches_statsmodels_cluster_fits(two_arm_cells: pd.DataFrame) -> None:
    """Absolute lift = WLS of the rate on the arm weighted by impressions; log relative lift =
    Poisson GLM with a log-impressions offset; both with cluster-robust covariance by video.
    statsmodels without its small-sample factor times G/(G-1) equals the linearisation."""
    cells = two_arm_cells
    row = lift_table(cells, metrics=("ctr",)).iloc[0]
    data = cells.assign(rate=cells["clicks"] / cells["impressions"], t=(cells["variant"] == "full_boost").astype(float))
    groups = pd.factorize(data["video_id"])[0]
    g = len(set(groups))
    kw = {"groups": groups, "use_correction": False}
    wls = smf.wls("rate ~ t", data, weights=data["impressions"]).fit(cov_type="cluster", cov_kwds=kw)
    assert row["abs_lift"] == pytest.approx(wls.params["t"], rel=1e-10)
    assert row["abs_se"] == pytest.approx(wls.bse["t"] * np.sqrt(g / (g - 1)), rel=1e-8)
    pois = smf.glm("clicks ~ t", data, family=sm.families.Poisson(), offset=np.log(data["impressions"])).fit(
        cov_type="cluster", cov_kwds=kw
    )
    assert row["log_ratio"] == pytest.approx(pois.params["t"], rel=1e-8)
    assert row["log_se"] == pytest.approx(pois.bse["t"] * np.sqrt(g / (g - 1)), rel=1e-6)
    # delta method for the relative lift: se(R_t/R_b - 1) = (R_t/R_b) * se(log ratio)
    assert row["rel_se"] == pytest.approx(np.exp(pois.params["t"]) * row["log_se"], rel=1e-8)
    # the CI uses t with G-1 df on the log scale
    crit = stats.t.ppf(0.975, g - 1)
    assert row["rel_ci_high"] == pytest.approx(np.exp(row["log_ratio"] + crit * row["log_se"]) - 1, rel=1e-10)


def test_watch_time_iid_test_matches_welch_from_raw_values() -> None:
    """The Welch z-test from sums and sums of squares equals scipy's on the raw values."""
    rng = np.random.default_rng(0)
    x_t, x_b = rng.gamma(2.0, 4.5, 400), rng.gamma(2.0, 4.0, 500)
    cells = pd.DataFrame(
        {
            "video_id": ["a", "b"],
            "variant": ["late_boost", "baseline"],
            "industry": "all",
            "impressions": [400, 500],
            "clicks": [0, 0],
            "conversions": [0, 0],
            "watch_time_s_sum": [x_t.sum(), x_b.sum()],
            "watch_time_s_sumsq": [(x_t**2).sum(), (x_b**2).sum()],
        }
    )
    row = lift_table(cells, metrics=("watch_time",)).iloc[0]
    welch = stats.ttest_ind(x_t, x_b, equal_var=False)
    assert row["iid_z"] == pytest.approx(welch.statistic, rel=1e-9)
    assert row["abs_lift"] == pytest.approx(x_t.mean() - x_b.mean(), rel=1e-12)


def test_cochran_q_and_i2_by_hand() -> None:
    """Q = sum w_i (y_i - y_w)^2 with w = 1/se^2; I^2 = max(0, (Q - df) / Q) (Higgins & Thompson 2002)."""
    y = np.array([0.10, 0.25, 0.02, 0.18])
    se = np.array([0.04, 0.05, 0.03, 0.06])
    table = pd.DataFrame(
        {"metric": "ctr", "variant": "early_boost", "industry": list("abcd"), "log_ratio": y, "log_se": se}
    )
    w = 1 / se**2
    ybar = np.sum(w * y) / w.sum()
    q = float(np.sum(w * (y - ybar) ** 2))
    out = cochran_q(table).iloc[0]
    assert out["cochran_q"] == pytest.approx(q, rel=1e-12)
    assert out["p_value"] == pytest.approx(stats.chi2.sf(q, 3), rel=1e-10)
    assert out["i2"] == pytest.approx(max(0.0, (q - 3) / q), rel=1e-12)
    assert out["pooled_log_ratio_fe"] == pytest.approx(ybar, rel=1e-12)
    # DerSimonian-Laird tau^2 by hand
    tau2 = max(0.0, (q - 3) / (w.sum() - (w**2).sum() / w.sum()))
    assert out["tau2"] == pytest.approx(tau2, rel=1e-10)
    homogeneous = table.assign(log_ratio=0.1)
    assert cochran_q(homogeneous).iloc[0]["i2"] == 0.0


def test_interaction_glm_and_wald_by_hand() -> None:
    videos = _videos(60, ("beauty", "food", "tech"))
    effects = SimulationEffects(industry_modifier={"beauty": 2.0, "tech": 0.25}, lift_sd=0.03)
    rows = simulate_ab_rows(
        videos, effects, seed=5, days=1, segments=["all"], variants=["baseline", "early_boost", "late_boost"]
    )
    cells = _cells(rows, dict(zip(videos["video_id"], videos["industry"], strict=False)))
    res = fit_interaction_glm(cells, "ctr")
    # saturated in variant x industry: the reference cell's fitted rate is its pooled CTR
    ref = cells[(cells["variant"] == "baseline") & (cells["industry"] == "beauty")]
    assert 1 / (1 + np.exp(-res.params["Intercept"])) == pytest.approx(
        ref["clicks"].sum() / ref["impressions"].sum(), rel=1e-6
    )
    wald = interaction_wald(res)
    names = [n for n in res.params.index if ":" in n]
    b = res.params[names].to_numpy()
    v = res.cov_params().loc[names, names].to_numpy()
    assert wald["df"] == 4 and wald["rank_ok"]
    assert wald["wald_chi2"] == pytest.approx(float(b @ np.linalg.solve(v, b)), rel=1e-8)
    assert wald["p_value"] == pytest.approx(stats.chi2.sf(wald["wald_chi2"], 4), rel=1e-8)
    assert wald["p_value"] < 1e-3  # planted modifiers 2.0 / 1.0 / 0.25 are detected


def test_industry_lifts_are_multiplicity_adjusted() -> None:
    videos = _videos(45, ("beauty", "food", "tech"))
    rows = simulate_ab_rows(videos, seed=6, days=1, segments=["all"])
    cells = _cells(rows, dict(zip(videos["video_id"], videos["industry"], strict=False)))
    table = industry_lifts(cells, "ctr")
    assert len(table) == 3 * 6
    from statsmodels.stats.multitest import multipletests

    assert np.allclose(table["p_holm"], multipletests(table["p_value"], method="holm")[1])
    assert np.allclose(table["p_bh"], multipletests(table["p_value"], method="fdr_bh")[1])
    assert (table["p_holm"] >= table["p_value"] - 1e-15).all()


def test_timing_contrast_matches_poisson_glm() -> None:
    rows = simulate_ab_rows(_videos(40), seed=7, days=1, segments=["all"])
    cells = _cells(rows)
    table = timing_contrasts(cells, "ctr")
    row = table[table["contrast"] == "early_boost vs late_boost"].iloc[0]
    data = cells[cells["variant"].isin(["early_boost", "late_boost"])].copy()
    data["t"] = (data["variant"] == "early_boost").astype(float)
    groups = pd.factorize(data["video_id"])[0]
    pois = smf.glm("clicks ~ t", data, family=sm.families.Poisson(), offset=np.log(data["impressions"])).fit(
        cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False}
    )
    assert row["log_ratio"] == pytest.approx(pois.params["t"], rel=1e-8)
    assert row["log_se"] == pytest.approx(pois.bse["t"] * np.sqrt(40 / 39), rel=1e-6)
    joint = table[table["contrast"].str.startswith("joint")].iloc[0]
    assert joint["df"] == 2 and joint["p_value"] < 0.05  # planted early 12% > middle 7% > late 3%


def test_dose_response_recovers_slope() -> None:
    videos = _videos(80)
    rng = np.random.default_rng(8)
    deltas = pd.DataFrame(
        [
            (v, var, w, rng.uniform(-0.1, 0.5))
            for v in videos["video_id"]
            for var, w in (("early_boost", "early"), ("late_boost", "late"), ("full_boost", "full"))
        ],
        columns=["video_id", "variant", "window", "achieved_delta"],
    )
    effects = SimulationEffects(ctr_lift={}, ctr_dose_slope=0.6, lift_sd=0.0)
    rows = simulate_ab_rows(
        videos,
        effects,
        seed=9,
        days=2,
        segments=["all"],
        achieved_delta=deltas,
        variants=["baseline", "early_boost", "late_boost", "full_boost"],
    )
    out = dose_response(_cells(rows), deltas, "ctr").iloc[0]
    assert out["ci_low"] < 0.6 < out["ci_high"]
    assert out["n_video_variants"] == 240


def test_srm_chi_square() -> None:
    arms = pd.DataFrame(
        {
            "experiment_id": "e",
            "variant": ["baseline", "early_boost", "late_boost"],
            "impressions": [10_000, 10_450, 9_000],
            "planned_share": [0.4, 0.4, 0.2],
        }
    )
    out = srm_test(arms).iloc[0]
    exp = np.array([0.4, 0.4, 0.2]) * 29_450
    chi2 = float(np.sum((arms["impressions"] - exp) ** 2 / exp))
    assert out["statistic"] == pytest.approx(chi2)
    assert out["p_value"] == pytest.approx(stats.chi2.sf(chi2, 2))
    assert out["flagged"]
    equal = srm_test(arms.assign(planned_share=np.nan, impressions=[10_000, 10_050, 9_980])).iloc[0]
    assert not equal["flagged"] and "assumed equal" in equal["detail"]


def test_power_and_mde() -> None:
    """Closed form per arm: n = 2 ((z_{a/2} + z_b) / h)^2 with Cohen's h = 2 asin sqrt(p1) - 2 asin
    sqrt(p0); Cohen (1988, Table 6.4.1) lists n = 392 per group for h = 0.2, alpha = .05, power .8."""
    p0, lift = 0.02, 0.10
    h = 2 * np.arcsin(np.sqrt(p0 * 1.1)) - 2 * np.arcsin(np.sqrt(p0))
    closed = 2 * ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / h) ** 2
    p1 = np.sin(np.arcsin(np.sqrt(0.5)) + 0.1) ** 2  # a pair of rates with h = 0.2 exactly
    assert required_impressions(0.5, p1 / 0.5 - 1) == pytest.approx(392, abs=1)
    assert required_impressions(p0, lift) == pytest.approx(closed, rel=2e-3)  # statsmodels adds the far tail
    assert required_impressions(p0, lift, deff=3.0) == pytest.approx(3 * required_impressions(p0, lift))
    assert mde_relative(p0, required_impressions(p0, lift)) == pytest.approx(lift, rel=1e-4)
    assert design_effect(1001, 0.002) == pytest.approx(3.0)
    table = planning_table(p0, 200_000, 100, 0.001)
    assert table["mde_relative"].iat[1] > table["mde_relative"].iat[0]


def test_timing_joint_test_left_out_with_too_few_videos() -> None:
    """Two videos cannot support two timing contrasts: the joint row says so, no singular inversion."""
    import pandas as pd

    from analysis.timing import timing_contrasts

    rows = []
    lifts = {"v1": (1.0, 1.2, 1.1, 1.05), "v2": (1.0, 1.3, 1.0, 1.15)}
    for video, base in (("v1", 0.02), ("v2", 0.03)):
        for variant, lift in zip(("baseline", "early_boost", "middle_boost", "late_boost"), lifts[video], strict=False):
            rows.append(
                {
                    "video_id": video,
                    "variant": variant,
                    "industry": "Beauty",
                    "impressions": 10_000,
                    "clicks": int(10_000 * base * lift),
                    "conversions": 20,
                    "watch_time_s_sum": 8e4,
                    "watch_time_s_sumsq": 9e5,
                }
            )
    table = timing_contrasts(pd.DataFrame(rows), "ctr")
    joint = table[table["contrast"].str.startswith("joint")]
    assert len(table) == 4 and len(joint) == 1
    assert np.isnan(joint["p_value"].iat[0]) and "2 videos cannot support 2" in joint["note"].iat[0]


def test_within_variant_dose_slope_is_not_confounded_by_variant_effects() -> None:
    """Doses that track the variant (boosts high, placebo ~0) confound the pooled slope only."""
    import numpy as np
    import pandas as pd

    from align_demo.ab_simulator import SimulationEffects, simulate_ab_rows
    from analysis.timing import VARIANT_WINDOW, dose_response

    rng = np.random.default_rng(5)
    videos = pd.DataFrame({"video_id": [f"v{i:02d}" for i in range(40)], "industry": "Beauty"})
    typical = {
        "early_boost": 0.15,
        "middle_boost": 0.12,
        "late_boost": 0.1,
        "full_boost": 0.14,
        "reduction": -0.1,
        "placebo": 0.0,
    }
    deltas = pd.DataFrame(
        [
            (v, var, VARIANT_WINDOW[var], typical[var] + rng.normal(0, 0.05))
            for v in videos["video_id"]
            for var in typical
        ],
        columns=["video_id", "variant", "window", "achieved_delta"],
    )
    effects = SimulationEffects(ctr_dose_slope=0.5, lift_sd=0.0)
    rows = simulate_ab_rows(videos, effects, seed=2, days=7, impressions_per_arm=20_000, achieved_delta=deltas)
    cells = rows.groupby(["video_id", "variant"], as_index=False)[
        ["impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq"]
    ].sum()
    cells["industry"] = "Beauty"
    table = dose_response(cells, deltas, "ctr").set_index("model")
    within = table[table.index.str.contains("within variant")].iloc[0]
    pooled = table[~table.index.str.contains("within variant")].iloc[0]
    assert within["ci_low"] < 0.5 < within["ci_high"]
    assert pooled["slope"] > within["ci_high"]  # the variants' own lifts leak into the pooled slope


def test_within_variant_dose_model_needs_more_videos_than_parameters() -> None:
    import numpy as np
    import pandas as pd

    from align_demo.ab_simulator import SimulationEffects, simulate_ab_rows
    from analysis.timing import VARIANT_WINDOW, dose_response

    rng = np.random.default_rng(1)
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(4)], "industry": "Beauty"})
    variants = ["early_boost", "middle_boost", "late_boost", "full_boost", "reduction", "placebo"]
    deltas = pd.DataFrame(
        [(v, var, VARIANT_WINDOW[var], rng.uniform(-0.1, 0.2)) for v in videos["video_id"] for var in variants],
        columns=["video_id", "variant", "window", "achieved_delta"],
    )
    rows = simulate_ab_rows(
        videos, SimulationEffects(ctr_dose_slope=0.5), seed=3, days=3, impressions_per_arm=5000, achieved_delta=deltas
    )
    cells = rows.groupby(["video_id", "variant"], as_index=False)[
        ["impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq"]
    ].sum()
    cells["industry"] = "Beauty"
    table = dose_response(cells, deltas, "ctr")
    assert len(table) == 1 and "within variant" not in table["model"].iloc[0]  # 4 videos < 7 parameters
