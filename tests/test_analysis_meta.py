"""Meta-analysis against metafor's published results for the BCG vaccine trials (dat.bcg).

Data: Colditz et al. (1994), JAMA 271:698-702, as shipped in metafor/metadat ``dat.bcg``
(tpos, tneg, cpos, cneg, ablat per trial; rdrr.io/pkg/metadat/man/dat.bcg.html). Published
figures (log risk ratio, ``escalc(measure="RR")``):
- metafor README (github.com/wviechtb/metafor): REML with test="knha": estimate -0.7145,
  se 0.1808, t -3.9522 (df 12), CI (-1.1084, -0.3206); tau^2 0.3132 (SE 0.1664), I^2 92.22 %,
  H^2 12.86, Q(12) 152.2330; predict(transf=exp): CI 0.33-0.73, PI 0.14-1.76. Meta-regression on
  ablat with knha: tau^2 0.0764, I^2 68.39 %, R^2 75.62 %, QE(11) 30.7331, F(1, 11) 12.5905,
  intercept 0.2515 (se 0.2839), ablat -0.0291 (se 0.0082, t -3.5483, CI -0.0472, -0.0111).
- RoBMA vignette "Bayesian meta-analysis" (metafor output printed there): REML z test:
  se 0.1798, z -3.9744, CI (-1.0669, -0.3622); confint(): tau^2 CI (0.1197, 1.1115), I^2 CI
  (81.9177, 97.6781) %, H^2 12.8558 (5.5303, 43.0680); mods = ~ ablat (z): QM 16.3571,
  intercept se 0.2491 z 1.0095, ablat se 0.0072 z -4.0444 CI (-0.0432, -0.0150).
- Issue 14 (DL): tau^2 0.3088, I^2 92.12 %.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.meta_analysis import combine_effects

from analysis.meta import log_risk_ratio, moderator_regression, pool_industries, random_effects

# trial: tpos, tneg, cpos, cneg, ablat (Colditz et al. 1994 via metafor dat.bcg)
BCG = pd.DataFrame(
    [
        ("Aronson 1948", 4, 119, 11, 128, 44),
        ("Ferguson & Simes 1949", 6, 300, 29, 274, 55),
        ("Rosenthal et al 1960", 3, 228, 11, 209, 42),
        ("Hart & Sutherland 1977", 62, 13536, 248, 12619, 52),
        ("Frimodt-Moller et al 1973", 33, 5036, 47, 5761, 13),
        ("Stein & Aronson 1953", 180, 1361, 372, 1079, 44),
        ("Vandiviere et al 1973", 8, 2537, 10, 619, 19),
        ("TPT Madras 1980", 505, 87886, 499, 87892, 13),
        ("Coetzee & Berjak 1968", 29, 7470, 45, 7232, 27),
        ("Rosenthal et al 1961", 17, 1699, 65, 1600, 42),
        ("Comstock et al 1974", 186, 50448, 141, 27197, 18),
        ("Comstock & Webster 1969", 5, 2493, 3, 2338, 33),
        ("Comstock et al 1976", 27, 16886, 29, 17825, 33),
    ],
    columns=["trial", "tpos", "tneg", "cpos", "cneg", "ablat"],
)


@pytest.fixture(scope="module")
def yv() -> tuple[np.ndarray, np.ndarray]:
    return log_risk_ratio(BCG["tpos"], BCG["tneg"], BCG["cpos"], BCG["cneg"])


def test_effect_sizes_match_escalc(yv: tuple[np.ndarray, np.ndarray]) -> None:
    y, v = yv  # metafor README prints yi / vi for the first and eighth trials
    assert round(y[0], 4) == -0.8893 and round(v[0], 4) == 0.3256
    assert round(y[7], 4) == 0.0120 and round(v[7], 4) == 0.0040


def test_reml_random_effects_matches_metafor(yv: tuple[np.ndarray, np.ndarray]) -> None:
    y, v = yv
    fit = random_effects(y, v, method="REML", test="z")
    c = fit.coefficients.loc["intercept"]
    assert round(fit.tau2, 4) == 0.3132 and round(fit.tau2_se, 4) == 0.1664
    assert round(fit.q, 4) == 152.2330 and fit.q_df == 12
    assert round(fit.i2, 2) == 92.22 and round(fit.h2, 2) == 12.86
    assert round(c["estimate"], 4) == -0.7145 and round(c["se"], 4) == 0.1798
    assert round(c["stat"], 4) == -3.9744
    assert (round(c["ci_low"], 4), round(c["ci_high"], 4)) == (-1.0669, -0.3622)
    # confint(): Q-profile CI of tau^2, and I^2 / H^2 mapped through it
    assert (round(fit.tau2_ci[0], 4), round(fit.tau2_ci[1], 4)) == (0.1197, 1.1115)
    # metafor finds the bounds with uniroot's default tolerance (about 1.2e-4 in tau^2), which
    # moves the lower I^2 bound in the third decimal: compared to 0.01 percentage points
    assert fit.i2_ci[0] == pytest.approx(81.9177, abs=0.01) and round(fit.i2_ci[1], 4) == 97.6781
    assert fit.h2_ci[0] == pytest.approx(5.5303, abs=0.002) and fit.h2_ci[1] == pytest.approx(43.0680, abs=0.002)


def test_knapp_hartung_and_prediction_interval_match_metafor(yv: tuple[np.ndarray, np.ndarray]) -> None:
    y, v = yv
    fit = random_effects(y, v, method="REML", test="knha")
    c = fit.coefficients.loc["intercept"]
    assert round(c["se"], 4) == 0.1808 and round(c["stat"], 4) == -3.9522 and c["df"] == 12
    assert (round(c["ci_low"], 4), round(c["ci_high"], 4)) == (-1.1084, -0.3206)
    # predict(res, transf=exp, digits=2): ci 0.33-0.73, pi 0.14-1.76
    assert [round(float(np.exp(b)), 2) for b in (c["ci_low"], c["ci_high"])] == [0.33, 0.73]
    assert [round(float(np.exp(b)), 2) for b in fit.pred_interval] == [0.14, 1.76]


def test_dersimonian_laird_matches_issue_figures_and_statsmodels(yv: tuple[np.ndarray, np.ndarray]) -> None:
    y, v = yv
    fit = random_effects(y, v, method="DL")
    assert round(fit.tau2, 4) == 0.3088
    assert round(fit.i2, 2) == 92.12
    assert fit.i2 == pytest.approx(100 * (fit.q - 12) / fit.q, rel=1e-10)  # DL: I^2 = (Q - df) / Q
    ref = combine_effects(y, v, method_re="dl")
    assert fit.tau2 == pytest.approx(ref.tau2, rel=1e-10)
    assert fit.estimate == pytest.approx(ref.mean_effect_re, rel=1e-10)
    assert fit.se == pytest.approx(ref.sd_eff_w_re, rel=1e-8)


def test_meta_regression_on_latitude_matches_metafor(yv: tuple[np.ndarray, np.ndarray]) -> None:
    y, v = yv
    z = random_effects(y, v, BCG[["ablat"]].to_numpy(), moderator_names=["ablat"], method="REML", test="z")
    # the restricted-likelihood maximum is tau^2 = 0.076348 (the REML score is zero there to 1e-6);
    # metafor prints 0.0764 (SE 0.0591) from a Fisher-scoring iterate stopped when a step falls
    # below 1e-5: tau^2 and its SE agree to 1e-4, the rounded fourth decimals do not
    assert z.tau2 == pytest.approx(0.0764, abs=1e-4) and z.tau2_se == pytest.approx(0.0591, abs=1e-4)
    assert round(z.i2, 2) == 68.39 and round(z.h2, 2) == 3.16 and z.r2 == pytest.approx(75.62, abs=0.02)
    assert round(z.q, 4) == 30.7331 and z.q_df == 11
    # the rest follows from tau^2, so it agrees to about 1e-3 relative (exact in the fourth
    # decimal where the tau^2 difference does not reach it)
    close = lambda got, want: got == pytest.approx(want, rel=1e-3, abs=1e-4)  # noqa: E731
    assert close(z.qm, 16.3571)
    a, b = z.coefficients.loc["intercept"], z.coefficients.loc["ablat"]
    assert close(a["estimate"], 0.2515) and close(a["se"], 0.2491) and close(a["stat"], 1.0095)
    assert round(b["estimate"], 4) == -0.0291 and round(b["se"], 4) == 0.0072 and close(b["stat"], -4.0444)
    assert (round(b["ci_low"], 4), round(b["ci_high"], 4)) == (-0.0432, -0.0150)
    kh = random_effects(y, v, BCG[["ablat"]].to_numpy(), moderator_names=["ablat"], method="REML", test="knha")
    b = kh.coefficients.loc["ablat"]
    assert close(kh.qm, 12.5905)
    assert round(b["se"], 4) == 0.0082 and close(b["stat"], -3.5483) and b["df"] == 11
    assert (round(b["ci_low"], 4), round(b["ci_high"], 4)) == (-0.0472, -0.0111)


def test_reml_is_the_restricted_likelihood_maximum(yv: tuple[np.ndarray, np.ndarray]) -> None:
    """The REML estimate zeroes the REML score tr(P) = y'PPy (Viechtbauer 2005, eq. 10)."""
    from analysis.meta import p_matrix

    y, v = yv
    tau2 = random_effects(y, v).tau2
    p = p_matrix(v, np.ones((len(y), 1)), tau2)
    assert float(np.trace(p)) == pytest.approx(float(y @ p @ p @ y), rel=1e-7)
    homogeneous = random_effects(np.full(5, 0.2) + np.array([0.001, -0.001, 0, 0.0005, -0.0005]), np.full(5, 0.04))
    assert homogeneous.tau2 == 0.0 and homogeneous.i2 == 0.0 and homogeneous.tau2_ci[0] == 0.0


def test_pool_industries_and_unestimable_rows() -> None:
    table = pd.DataFrame(
        {
            "metric": "ctr",
            "variant": ["early_boost"] * 3 + ["late_boost"],
            "industry": ["beauty", "food", "tech", "beauty"],
            "log_ratio": [0.10, 0.25, 0.02, 0.05],
            "log_se": [0.04, 0.05, 0.03, 0.02],
        }
    )
    out = pool_industries(table)
    early = out[out["variant"] == "early_boost"]
    assert list(zip(early["method"], early["test"], strict=False)) == [
        ("DL", "z"),
        ("REML", "z"),
        ("REML", "knha_trunc"),
    ]
    assert (early["k"] == 3).all() and (early["ci_low"] < early["estimate"]).all()
    late = out[out["variant"] == "late_boost"].iloc[0]
    assert late["note"].startswith("not estimable") and np.isnan(late["estimate"])


def test_moderator_regression_recovers_planted_slope() -> None:
    rng = np.random.default_rng(4)
    delta = rng.uniform(0, 0.4, 40)
    var = rng.uniform(0.002, 0.01, 40)
    lift = 0.02 + 0.5 * delta + rng.normal(0, np.sqrt(var + 0.001))
    frame = pd.DataFrame(
        {
            "metric": "ctr",
            "variant": "full_boost",
            "video_id": range(40),
            "log_lift": lift,
            "var": var,
            "achieved_delta": delta,
        }
    )
    row = moderator_regression(frame, "achieved_delta").iloc[0]
    assert row["term"] == "achieved_delta" and row["ci_low"] < 0.5 < row["ci_high"]
    flat = moderator_regression(frame.assign(achieved_delta=0.1), "achieved_delta").iloc[0]
    assert "no slope" in flat["note"]
