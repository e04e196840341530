"""Random-effects meta-analysis and meta-regression as researchers report them.

Per-industry (or per-video) lifts are pooled with inverse-variance weights ``1 / (v_i + tau^2)``.
One fit reports what a reader of a meta-analysis expects to see (the fields of metafor's
``rma()``): the pooled effect with its SE, CI and z (or, with ``test="knha"``, the Knapp-Hartung
t with k - p df, the small-sample choice when few industries are pooled); tau^2 by
DerSimonian-Laird or REML (REML by a bounded one-dimensional maximisation of the restricted
likelihood) with the REML SE and a Q-profile CI; Cochran's Q; I^2 and H^2 with their CIs; the
prediction interval for a new industry; and, with moderators, the meta-regression coefficients,
the omnibus moderator test QM and the share of tau^2 the moderators account for (R^2).

statsmodels' ``combine_effects`` has DL and Paule-Mandel but no REML, moderators or Q-profile,
so the few formulas live here and are tested against metafor's published BCG results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "log_risk_ratio",
    "moderator_regression",
    "p_matrix",
    "pool_industries",
    "random_effects",
    "t_equivalent_variance",
]

TAU2_METHODS = ("DL", "REML")
# z: normal; knha: Knapp-Hartung t(k-p); knha_trunc: Knapp-Hartung with its scale truncated at 1,
# so Q < df never shrinks the SE below the model-based one (Knapp & Hartung 2003, Roever et al. 2015)
TESTS = ("z", "knha", "knha_trunc")


@dataclass(frozen=True)
class MetaFit:
    """One random-/mixed-effects fit (fields named after metafor's ``rma`` output)."""

    k: int
    method: str
    test: str
    coefficients: pd.DataFrame  # index: term; estimate, se, stat, df, p_value, ci_low, ci_high
    tau2: float
    tau2_se: float
    tau2_ci: tuple[float, float]
    q: float
    q_df: int
    q_p: float
    i2: float  # percent
    i2_ci: tuple[float, float]
    h2: float
    h2_ci: tuple[float, float]
    qm: float
    qm_df: int
    qm_p: float
    r2: float  # percent of tau^2 explained by moderators (nan without moderators)
    pred_interval: tuple[float, float]  # for a new study at the mean moderator row (intercept only: the pooled effect)
    notes: list[str] = field(default_factory=list)

    @property
    def estimate(self) -> float:
        return float(self.coefficients["estimate"].iat[0])

    @property
    def se(self) -> float:
        return float(self.coefficients["se"].iat[0])


def _design(k: int, moderators: np.ndarray | None) -> np.ndarray:
    ones = np.ones((k, 1))
    if moderators is None:
        return ones
    mods = np.asarray(moderators, dtype=float).reshape(k, -1)
    return np.hstack([ones, mods])


def _wls(y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients, their (model-based) covariance and the weights for a given tau^2."""
    w = 1.0 / (v + tau2)
    xtwx = x.T @ (w[:, None] * x)
    cov = np.linalg.inv(xtwx)
    beta = cov @ (x.T @ (w * y))
    return beta, cov, w


def p_matrix(v: np.ndarray, x: np.ndarray, tau2: float) -> np.ndarray:
    """``P = W - W X (X'WX)^-1 X'W`` (the residual-maker of the weighted fit)."""
    w = 1.0 / (v + tau2)
    wx = w[:, None] * x
    return np.diag(w) - wx @ np.linalg.solve(x.T @ wx, wx.T)


def _trace_p(v: np.ndarray, x: np.ndarray, tau2: float, squared: bool = False) -> float:
    """``tr(P)`` or ``tr(P P)`` from p x p products (no k x k matrix: k can be hundreds of videos)."""
    w = 1.0 / (v + tau2)
    m = np.linalg.inv(x.T @ (w[:, None] * x))
    a2 = x.T @ ((w**2)[:, None] * x)
    if not squared:
        return float(w.sum() - np.trace(m @ a2))
    a3 = x.T @ ((w**3)[:, None] * x)
    ma2 = m @ a2
    return float((w**2).sum() - 2 * np.trace(m @ a3) + np.trace(ma2 @ ma2))


def generalised_q(y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float) -> float:
    """``sum w_i (y_i - x_i b)^2`` with ``w = 1 / (v + tau2)``; Cochran's Q at tau2 = 0."""
    beta, _, w = _wls(y, v, x, tau2)
    return float(np.sum(w * (y - x @ beta) ** 2))


def tau2_dl(y: np.ndarray, v: np.ndarray, x: np.ndarray) -> float:
    """DerSimonian-Laird moment estimator (with moderators: the Raudenbush 2009 generalisation)."""
    k, p = x.shape
    q = generalised_q(y, v, x, 0.0)
    return max(0.0, (q - (k - p)) / _trace_p(v, x, 0.0))


def _reml_loglik(tau2: float, y: np.ndarray, v: np.ndarray, x: np.ndarray) -> float:
    beta, _, w = _wls(y, v, x, tau2)
    resid = y - x @ beta
    sign, logdet = np.linalg.slogdet(x.T @ (w[:, None] * x))
    return float(-0.5 * (np.sum(np.log(v + tau2)) + logdet + np.sum(w * resid**2)))


def tau2_reml(y: np.ndarray, v: np.ndarray, x: np.ndarray) -> float:
    """REML tau^2: maximise the restricted log-likelihood over ``[0, upper]`` (Brent, bounded).

    The upper bound is generous (ten times the larger of the outcomes' variance and the largest
    sampling variance); the boundary 0 is compared explicitly because Brent never evaluates
    the end points.
    """
    upper = 10.0 * max(float(np.var(y, ddof=1)) if len(y) > 1 else 0.0, float(np.max(v)), 1e-8)
    res = optimize.minimize_scalar(
        lambda t: -_reml_loglik(t, y, v, x),
        bounds=(0.0, upper),
        method="bounded",
        options={"xatol": 1e-12, "maxiter": 500},
    )
    best = float(res.x)
    if _reml_loglik(0.0, y, v, x) >= _reml_loglik(best, y, v, x):
        return 0.0
    return best


def _q_profile(y: np.ndarray, v: np.ndarray, x: np.ndarray, alpha: float) -> tuple[float, float]:
    """Q-profile CI for tau^2 (Viechtbauer 2007): where the generalised Q crosses chi^2 quantiles."""
    k, p = x.shape
    df = k - p
    if df < 1:
        return float("nan"), float("nan")
    hi_crit, lo_crit = stats.chi2.ppf(1 - alpha / 2, df), stats.chi2.ppf(alpha / 2, df)

    def solve(crit: float) -> float:
        f = lambda t: generalised_q(y, v, x, t) - crit  # noqa: E731  (decreasing in t)
        if f(0.0) <= 0:
            return 0.0
        upper = max(float(np.var(y, ddof=1)), float(np.max(v)), 1e-8)
        while f(upper) > 0:
            upper *= 10.0
            if upper > 1e12:
                return float("inf")
        return float(optimize.brentq(f, 0.0, upper, xtol=1e-12))

    return solve(hi_crit), solve(lo_crit)


def _validated_effects(
    y: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray, method: str, test: str
) -> tuple[np.ndarray, np.ndarray]:
    """Effects and sampling variances as float vectors, or a ``ValueError`` saying what is wrong."""
    if method not in TAU2_METHODS:
        raise ValueError(f"tau^2 method {method!r}: expected one of {TAU2_METHODS}")
    if test not in TESTS:
        raise ValueError(f"test {test!r}: expected one of {TESTS}")
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    if y.shape != v.shape or y.ndim != 1:
        raise ValueError("effects and variances must be vectors of the same length")
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v > 0).all()):
        raise ValueError("effects must be finite and sampling variances finite and > 0")
    return y, v


def _tau2(y: np.ndarray, v: np.ndarray, x: np.ndarray, method: str) -> float:
    return tau2_dl(y, v, x) if method == "DL" else tau2_reml(y, v, x)


@dataclass(frozen=True)
class _Coefficients:
    """The fitted coefficients at tau^2: estimates, the (Knapp-Hartung scaled) covariance, the table."""

    beta: np.ndarray
    cov: np.ndarray
    crit: float
    table: pd.DataFrame


def _coefficients(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float, names: list[str], test: str, alpha: float
) -> _Coefficients:
    """Coefficients with SE, z (or Knapp-Hartung t with k - p df), p and CI."""
    beta, cov, w = _wls(y, v, x, tau2)
    resid = y - x @ beta
    df_resid = x.shape[0] - x.shape[1]
    if test in ("knha", "knha_trunc"):
        s2 = float(np.sum(w * resid**2) / df_resid)
        cov = cov * (max(s2, 1.0) if test == "knha_trunc" else s2)
        ref_df: float = float(df_resid)
        crit = stats.t.ppf(1 - alpha / 2, df_resid)
    else:
        ref_df = float("inf")
        crit = stats.norm.ppf(1 - alpha / 2)
    se = np.sqrt(np.diag(cov))
    stat = beta / se
    pval = 2 * (stats.t.sf(np.abs(stat), df_resid) if test != "z" else stats.norm.sf(np.abs(stat)))
    table = pd.DataFrame(
        {
            "estimate": beta,
            "se": se,
            "stat": stat,
            "df": ref_df,
            "p_value": pval,
            "ci_low": beta - crit * se,
            "ci_high": beta + crit * se,
        },
        index=pd.Index(names, name="term"),
    )
    return _Coefficients(beta, cov, crit, table)


def _heterogeneity(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float, method: str, alpha: float
) -> dict[str, object]:
    """Q (fixed-effect weights), tau^2 SE and Q-profile CI, I^2 and H^2 with their CIs (MetaFit fields)."""
    df_resid = x.shape[0] - x.shape[1]
    q = generalised_q(y, v, x, 0.0)
    s2_typical = df_resid / _trace_p(v, x, 0.0)  # the "typical" sampling variance (k - p) / tr(P)
    i2_of = lambda t: 100.0 * t / (t + s2_typical)  # noqa: E731
    h2_of = lambda t: (t + s2_typical) / s2_typical  # noqa: E731
    tau2_ci = _q_profile(y, v, x, alpha)
    tau2_se = float(np.sqrt(2.0 / _trace_p(v, x, tau2, squared=True))) if method == "REML" else float("nan")
    return {
        "tau2_se": tau2_se,
        "tau2_ci": tau2_ci,
        "q": q,
        "q_df": df_resid,
        "q_p": float(stats.chi2.sf(q, df_resid)),
        "i2": i2_of(tau2),
        "i2_ci": (i2_of(tau2_ci[0]), i2_of(tau2_ci[1])),
        "h2": h2_of(tau2),
        "h2_ci": (h2_of(tau2_ci[0]), h2_of(tau2_ci[1])),
    }


def _moderator_test(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2: float, fit: _Coefficients, method: str, test: str
) -> dict[str, object]:
    """Omnibus moderator test QM (chi^2, or F for knha) and the pseudo-R^2 against the intercept-only fit."""
    k, p = x.shape
    if p <= 1:
        return {"qm": float("nan"), "qm_df": 0, "qm_p": float("nan"), "r2": float("nan")}
    b = fit.beta[1:]
    qm = float(b @ np.linalg.solve(fit.cov[1:, 1:], b))
    qm_df = p - 1
    qm_p = float(stats.f.sf(qm / qm_df, qm_df, k - p)) if test != "z" else float(stats.chi2.sf(qm, qm_df))
    if test != "z":
        qm = qm / qm_df  # reported as F, as metafor does
    tau2_0 = _tau2(y, v, np.ones((k, 1)), method)
    r2 = 100.0 * max(0.0, (tau2_0 - tau2) / tau2_0) if tau2_0 > 0 else 0.0
    return {"qm": qm, "qm_df": qm_df, "qm_p": qm_p, "r2": r2}


def _prediction_interval(x: np.ndarray, fit: _Coefficients, tau2: float) -> tuple[float, float]:
    """Prediction interval for a new study at the moderators' mean (the pooled effect without moderators)."""
    x_new = x.mean(axis=0)
    mu = float(x_new @ fit.beta)
    se_mu = float(np.sqrt(x_new @ fit.cov @ x_new))
    half = fit.crit * np.sqrt(tau2 + se_mu**2)
    return (mu - half, mu + half)


def random_effects(
    y: Sequence[float] | np.ndarray,
    v: Sequence[float] | np.ndarray,
    moderators: np.ndarray | None = None,
    moderator_names: Sequence[str] | None = None,
    method: str = "REML",
    test: str = "z",
    alpha: float = 0.05,
) -> MetaFit:
    """Random-effects model (no moderators) or mixed-effects meta-regression.

    ``y``: effects (e.g. log rate ratios), ``v``: their sampling variances. ``method``: "DL" or
    "REML". ``test``: "z" (normal, metafor's default) or "knha" (Knapp-Hartung: covariance scaled
    by the weighted residual variance, t with k - p df).
    """
    y, v = _validated_effects(y, v, method, test)
    k = len(y)
    x = _design(k, moderators)
    p = x.shape[1]
    if k <= p:
        raise ValueError(f"{k} studies cannot support {p} coefficient(s) and a heterogeneity estimate")
    names = ["intercept"] + list(moderator_names or [f"mod{i}" for i in range(1, p)])
    tau2 = _tau2(y, v, x, method)
    fit = _coefficients(y, v, x, tau2, names, test, alpha)
    heterogeneity = _heterogeneity(y, v, x, tau2, method, alpha)
    moderation = _moderator_test(y, v, x, tau2, fit, method, test)
    notes = [f"k={k}: tau^2 from {k} studies is very imprecise"] if k < 3 else []
    return MetaFit(
        k=k,
        method=method,
        test=test,
        coefficients=fit.table,
        tau2=float(tau2),
        **heterogeneity,
        **moderation,
        pred_interval=_prediction_interval(x, fit, tau2),
        notes=notes,
    )


def log_risk_ratio(
    tpos: np.ndarray, tneg: np.ndarray, cpos: np.ndarray, cneg: np.ndarray, add: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Log risk ratio and its large-sample variance per 2x2 table (metafor ``escalc(measure="RR")``).

    ``add`` is added to every cell of a table with a zero cell (metafor's ``to="only0"``).
    """
    a, b, c, d = (np.asarray(t, dtype=float) for t in (tpos, tneg, cpos, cneg))
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(zero, t + add, t) for t in (a, b, c, d))
    n1, n2 = a + b, c + d
    return np.log((a / n1) / (c / n2)), 1 / a - 1 / n1 + 1 / c - 1 / n2


def fit_row(fit: MetaFit, **labels: object) -> dict[str, object]:
    """One flat report row for a pooled fit (the intercept, or the first moderator when present)."""
    term = fit.coefficients.index[1] if len(fit.coefficients) > 1 else "intercept"
    c = fit.coefficients.loc[term]
    return {
        **labels,
        "term": term,
        "method": fit.method,
        "test": fit.test,
        "k": fit.k,
        "estimate": float(c["estimate"]),
        "se": float(c["se"]),
        "stat": float(c["stat"]),
        "df": float(c["df"]),
        "p_value": float(c["p_value"]),
        "ci_low": float(c["ci_low"]),
        "ci_high": float(c["ci_high"]),
        "pi_low": fit.pred_interval[0],
        "pi_high": fit.pred_interval[1],
        "tau2": fit.tau2,
        "tau2_se": fit.tau2_se,
        "tau2_ci_low": fit.tau2_ci[0],
        "tau2_ci_high": fit.tau2_ci[1],
        "q": fit.q,
        "q_df": fit.q_df,
        "q_p": fit.q_p,
        "i2": fit.i2,
        "i2_ci_low": fit.i2_ci[0],
        "i2_ci_high": fit.i2_ci[1],
        "h2": fit.h2,
        "qm": fit.qm,
        "qm_p": fit.qm_p,
        "r2": fit.r2,
        "note": "; ".join(fit.notes),
    }


def t_equivalent_variance(log_se: np.ndarray, df: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """A subgroup's sampling variance widened so that a normal interval matches its t(df) interval:
    ``(se * t_{df} / z)^2``. A lift from 2 videos (df ~ 1) then weighs what it is worth."""
    z = stats.norm.ppf(1 - alpha / 2)
    t = stats.t.ppf(1 - alpha / 2, np.where(np.isfinite(df) & (df > 0), df, np.inf))
    return np.asarray((log_se * t / z) ** 2, dtype=float)


def _pool_rows(y: np.ndarray, v: np.ndarray, labels: dict[str, object], alpha: float) -> list[dict[str, object]]:
    """The industry-level fits of one metric x variant (DL z, REML z, REML + truncated Knapp-Hartung)."""
    rows = []
    for method, test in (("DL", "z"), ("REML", "z"), ("REML", "knha_trunc")):
        fit = random_effects(y, v, method=method, test=test, alpha=alpha)
        rows.append(fit_row(fit, **labels, level="industries (t-equivalent variances)", recommended=False))
    return rows


def _video_level_row(part: pd.DataFrame, labels: dict[str, object], alpha: float) -> dict[str, object]:
    """REML + truncated Knapp-Hartung fitted directly to the per-video log ratios (binomial variances)."""
    ok = part[np.isfinite(part["log_lift"]) & (part["var"] > 0)]
    if len(ok) < 3:
        return {**labels, "level": "videos", "k": len(ok), "note": f"not estimable: {len(ok)} video(s); needs 3"}
    fit = random_effects(ok["log_lift"].to_numpy(), ok["var"].to_numpy(), method="REML", test="knha_trunc", alpha=alpha)
    return fit_row(fit, **labels, level="videos", recommended=True)


def pool_industries(
    industry_table: pd.DataFrame,
    alpha: float = 0.05,
    video_lifts: pd.DataFrame | None = None,
    include_unknown: bool = False,
) -> pd.DataFrame:
    """Pool the estimable per-industry log lifts (``heterogeneity.industry_lifts``) per metric x variant.

    Only industries whose lift is estimable (2 or more videos with both arms) are pooled, and
    the "unknown" bucket (videos without an industry) only when ``include_unknown``. Each
    industry's variance is t-equivalent (:func:`t_equivalent_variance`): a per-industry SE
    with 1-2 df is not a known variance. Rows: DL and REML with z, REML with Knapp-Hartung
    truncated at 1 (never narrower than the model-based SE when Q < df), and, given
    ``video_lifts`` (``timing.video_variant_log_lifts`` rows with a metric column), the
    video-level random-effects model on the same videos' per-video log ratios: the row to read
    (``recommended``), because its variances are binomial ones from large counts and its
    heterogeneity is estimated from every video rather than from 2-4 industry means.
    """
    rows: list[dict[str, object]] = []
    if industry_table is None or industry_table.empty:
        return pd.DataFrame(rows)
    table = industry_table if include_unknown else industry_table[industry_table["industry"] != "unknown"]
    for (metric, variant), part in table.groupby(["metric", "variant"], sort=False):
        labels: dict[str, object] = {"metric": metric, "variant": variant}
        ok = part[np.isfinite(part["log_ratio"]) & np.isfinite(part["log_se"]) & (part["log_se"] > 0)]
        if len(ok) < 2:
            why = f"not estimable: {len(ok)} estimable industry lift(s); pooling needs 2"
            rows.append({**labels, "k": len(ok), "method": "", "test": "", "note": why})
            continue
        df = ok["df"].to_numpy(dtype=float) if "df" in ok else np.full(len(ok), np.inf)
        v = t_equivalent_variance(ok["log_se"].to_numpy(), df, alpha)
        rows.extend(_pool_rows(ok["log_ratio"].to_numpy(), v, labels, alpha))
        if video_lifts is not None and not video_lifts.empty:
            mine = video_lifts[
                (video_lifts["metric"] == metric)
                & (video_lifts["variant"] == variant)
                & video_lifts["industry"].isin(set(ok["industry"]))
            ]
            rows.append(_video_level_row(mine, labels, alpha))
    return pd.DataFrame(rows)


def moderator_regression(
    video_lifts: pd.DataFrame, moderator: str, alpha: float = 0.05, min_videos: int = 4
) -> pd.DataFrame:
    """Meta-regression of per-video log lifts on a video-level moderator, per metric x variant.

    ``video_lifts`` has metric, variant, video_id, log_lift, var and the moderator column (for
    example ``achieved_delta``: the alignment change the manipulation check measured). REML with
    Knapp-Hartung t (k - 2 df). A variant whose moderator does not vary, or with fewer than
    ``min_videos`` videos, gets a row that says why it has no slope.
    """
    rows: list[dict[str, object]] = []
    if video_lifts is None or video_lifts.empty or moderator not in video_lifts:
        return pd.DataFrame(rows)
    for (metric, variant), part in video_lifts.groupby(["metric", "variant"], sort=False):
        ok = part[np.isfinite(part["log_lift"]) & (part["var"] > 0) & np.isfinite(part[moderator])]
        why = None
        if len(ok) < min_videos:
            why = f"{len(ok)} videos with a lift and a {moderator}; a slope with its heterogeneity needs {min_videos}"
        elif ok[moderator].nunique() < 2:
            why = f"{moderator} is the same for every video: no slope"
        if why:
            rows.append(
                {"metric": metric, "variant": variant, "term": moderator, "k": len(ok), "note": "not estimable: " + why}
            )
            continue
        fit = random_effects(
            ok["log_lift"].to_numpy(),
            ok["var"].to_numpy(),
            ok[[moderator]].to_numpy(),
            moderator_names=[moderator],
            method="REML",
            test="knha",
            alpha=alpha,
        )
        rows.append(fit_row(fit, metric=metric, variant=variant))
    return pd.DataFrame(rows)
