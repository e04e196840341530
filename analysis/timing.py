"""When attention lands: early vs middle vs late contrasts, and dose-response on alignment.

Timing contrasts compare the boost variants with each other directly (log-rate differences,
e.g. ``log CTR_early - log CTR_late``) using the same per-video influence values as the lift
table, so their covariance across arms (the same videos run every arm) is accounted for. A
joint test asks whether the three timings differ at all; below 30 videos it is a Hotelling-T^2
F on the CR2 covariance (the demo's four videos once gave a chi-square Wald of 6655, p = 0).

Dose-response regresses each video-variant's log lift over its own baseline on the achieved
alignment change recorded by the manipulation check (weighted by inverse binomial variance,
clustered by video): if moving attention onto the product causes clicks, lift should grow
with the achieved change, whichever variant produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from align_core.stimuli.plans import DEFAULT_VARIANTS, dose_windows
from align_core.stimuli.plans import timing_variants as registry_timing_variants
from analysis.arms import BASELINE
from analysis.lift import METRICS, RatioInfluence, not_reported, rate_fit, ratio_influence
from analysis.matched import matched_cells
from analysis.small_sample import (
    METHOD_CR1,
    METHOD_CR2,
    SMALL_SAMPLE_CLUSTERS,
    ClusterFit,
    cluster_wls,
    hotelling_test,
)

__all__ = [
    "VARIANT_WINDOW",
    "dose_response",
    "select_doses",
    "timing_contrasts",
    "video_variant_log_lifts",
]

# Derived from the variant registry (the defaults here; the report passes each experiment's).
TIMING_VARIANTS: tuple[str, ...] = registry_timing_variants(DEFAULT_VARIANTS)
# The window whose alignment change is the dose of each variant (manipulation_check.window).
VARIANT_WINDOW: dict[str, str] = dose_windows(DEFAULT_VARIANTS)
# The registry's whole-clip window ("full") is recorded by the manipulation check as "all".
CHECK_WINDOW: dict[str, str] = {"full": "all"}


def _contrast_row(
    metric: str, label: str, est: float, se: float, df: float, alpha: float, method: str, note: str = ""
) -> dict[str, object]:
    ok = np.isfinite(est) and np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0
    crit = stats.t.ppf(1 - alpha / 2, df) if ok else float("nan")
    stat = est / se if ok else float("nan")
    return {
        "metric": metric,
        "contrast": label,
        "log_ratio": est,
        "log_se": se if ok else float("nan"),
        "ratio": np.exp(est) if np.isfinite(est) else float("nan"),
        "ratio_ci_low": np.exp(est - crit * se) if ok else float("nan"),
        "ratio_ci_high": np.exp(est + crit * se) if ok else float("nan"),
        "statistic": stat,
        "df": df,
        "p_value": float(2 * stats.t.sf(abs(stat), df)) if ok else float("nan"),
        "se_method": method if ok else "",
        "note": note,
    }


@dataclass
class _TimingContrasts:
    """One metric's timing arms: rates, influence values and (below 30 videos) the CR2 fit."""

    metric: str
    alpha: float
    inf: RatioInfluence
    fit: ClusterFit | None  # None: CR1 with t(G-1), or fewer than 2 videos
    use_cr2: bool

    @property
    def num(self) -> str:
        return METRICS[self.metric][0]

    @property
    def cols(self) -> list[str]:
        return list(self.inf.rates.index)

    @property
    def method(self) -> str:
        return METHOD_CR2 if self.use_cr2 else METHOD_CR1

    def gradient(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Rows of d(log R_a - log R_b) / dR for each pair (the CR2 fit's coefficients are rates)."""
        rates, cols = self.inf.rates, self.cols
        c = np.zeros((len(pairs), len(cols)))
        for i, (a, b) in enumerate(pairs):
            c[i, cols.index(a)], c[i, cols.index(b)] = 1.0 / rates[a], -1.0 / rates[b]
        return c

    def pair_row(self, a: str, b: str) -> dict[str, object]:
        """``log R_a - log R_b`` with its interval, or a row saying why it has none."""
        inf, rates, g = self.inf, self.inf.rates, self.inf.n_clusters
        label = f"{a} vs {b}"
        nan = float("nan")
        zero = [v for v in (a, b) if not rates[v] > 0]
        if zero:
            den = METRICS[self.metric][1]
            why = f"not estimable: {', '.join(zero)} has 0 {self.num} in {inf.totals_den[zero[0]]:.0f} {den}"
            return _contrast_row(self.metric, label, nan, nan, nan, self.alpha, self.method, why)
        if g < 2:
            why = "not estimable: fewer than 2 videos"
            return _contrast_row(self.metric, label, nan, nan, nan, self.alpha, self.method, why)
        est = float(np.log(rates[a] / rates[b]))
        if self.fit is not None:
            res = self.fit.contrast(self.gradient([(a, b)])[0], self.alpha)
            se, df = res["se"], res["df"]
        else:
            c = np.zeros(len(self.cols))
            c[self.cols.index(a)], c[self.cols.index(b)] = 1.0, -1.0
            se, df = float(np.sqrt(inf.covariance(c)[0, 0])), float(g - 1)
        note = "" if se > 0 else "not estimable: the ratio does not vary across videos"
        return _contrast_row(self.metric, label, est, se, df, self.alpha, self.method, note)

    def joint_row(self, present: list[str]) -> dict[str, object]:
        """All present timings equal (k-1 contrasts against the first), or a row saying why not."""
        rates, g, q = self.inf.rates, self.inf.n_clusters, len(present) - 1
        joint = {
            "metric": self.metric,
            "contrast": "joint: " + " = ".join(present),
            "log_ratio": np.nan,
            "log_se": np.nan,
            "ratio": np.nan,
            "ratio_ci_low": np.nan,
            "ratio_ci_high": np.nan,
            "statistic": np.nan,
            "df": float(q),
            "p_value": np.nan,
            "se_method": "",
            "note": "",
        }
        if any(not rates[v] > 0 for v in present):
            joint["note"] = f"not estimable: a timing arm has 0 {self.num}"
        elif g - 1 < q:
            joint["note"] = f"not estimable: {g} videos cannot support {q} joint restrictions"
        else:
            est = np.array([np.log(rates[present[0]] / rates[v]) for v in present[1:]])
            joint.update(self._joint_cr2(est, present) if self.fit is not None else self._joint_cr1(est, present))
        return joint

    def _joint_cr2(self, est: np.ndarray, present: list[str]) -> dict[str, object]:
        cm = self.gradient([(present[0], v) for v in present[1:]])
        test = hotelling_test(est, cm @ self.fit.vcov_cr2 @ cm.T, self.inf.n_clusters)
        if not np.isfinite(test["p_value"]):
            return {"note": "not estimable: singular CR2 covariance of the timing contrasts"}
        return {
            "statistic": test["f"],
            "df": test["df1"],
            "p_value": test["p_value"],
            "se_method": f"{METHOD_CR2}; Hotelling F({test['df1']:.0f}, {test['df2']:.0f})",
        }

    def _joint_cr1(self, est: np.ndarray, present: list[str]) -> dict[str, object]:
        q, cols = len(present) - 1, self.cols
        cm = np.zeros((q, len(cols)))
        for i, v in enumerate(present[1:]):
            cm[i, cols.index(present[0])], cm[i, cols.index(v)] = 1.0, -1.0
        cov = self.inf.covariance(cm)
        if not (np.isfinite(cov).all() and np.linalg.matrix_rank(cov) == q):
            return {"note": "not estimable: singular covariance of the timing contrasts"}
        wald = float(est @ np.linalg.solve(cov, est))
        return {
            "statistic": wald,
            "p_value": float(stats.chi2.sf(wald, q)),
            "se_method": f"{METHOD_CR1}; Wald chi-square({q})",
        }


def timing_contrasts(
    cells: pd.DataFrame,
    metric: str = "ctr",
    alpha: float = 0.05,
    timing_variants: tuple[str, ...] = TIMING_VARIANTS,
    small_sample: bool | None = None,
) -> pd.DataFrame:
    """Pairwise ratios of the timing variants' rates plus a joint equality test (row 'joint').

    Each pair uses only the videos that ran both arms, the joint test only the videos that ran
    every timing arm; ``n_videos`` says how many.

    ``timing_variants``: the registry's timing arms, early to late
    (:func:`align_core.stimuli.plans.timing_variants`; the report passes each experiment's). Below 30 videos the contrasts use CR2 + Satterthwaite df and the joint test is a
    Hotelling-T^2 F on (k-1, G-k+1) df; otherwise CR1 with t(G-1) and a chi-square Wald. A
    contrast whose rate is zero (no clicks or conversions in an arm) or whose videos cannot
    support it gets a row that says why instead of a number.
    """
    present = [v for v in timing_variants if v in set(cells["variant"])]
    if len(present) < 2:
        return pd.DataFrame()
    rows = []
    unreported = not_reported(cells, metric)  # a NULL field: every row says so, none is estimated
    for a, b in combinations(present, 2):
        pair = matched_cells(cells, [a, b])
        g = pair["video_id"].nunique()
        if unreported or g < 2:
            why = unreported or f"not estimable: {g} video(s) ran both {a} and {b}; a contrast needs 2"
            row = _contrast_row(metric, f"{a} vs {b}", np.nan, np.nan, np.nan, alpha, "", why)
        else:
            row = _timing_on(pair, metric, alpha, small_sample).pair_row(a, b)
        rows.append({**row, "n_videos": g})
    block = matched_cells(cells, present)
    g = block["video_id"].nunique()
    if g >= 2 and not unreported:
        joint = _timing_on(block, metric, alpha, small_sample).joint_row(present)
    else:
        joint = _contrast_row(metric, "joint: " + " = ".join(present), np.nan, np.nan, np.nan, alpha, "", "")
        joint["note"] = unreported or f"not estimable: {g} video(s) ran every timing arm"
    rows.append({**joint, "n_videos": g})
    return pd.DataFrame(rows)


def _timing_on(cells: pd.DataFrame, metric: str, alpha: float, small_sample: bool | None) -> _TimingContrasts:
    """Timing contrasts of the arms in ``cells`` (already restricted to the videos that ran them all)."""
    num, den = METRICS[metric]
    inf = ratio_influence(cells, num, den)
    g = inf.n_clusters
    use_cr2 = small_sample if small_sample is not None else g < SMALL_SAMPLE_CLUSTERS
    fit = rate_fit(cells, num, den, inf.rates.index) if use_cr2 and g >= 2 else None
    return _TimingContrasts(metric, alpha, inf, fit, use_cr2)


def video_variant_log_lifts(cells: pd.DataFrame, metric: str = "ctr", continuity: float = 0.5) -> pd.DataFrame:
    """Each video's log rate ratio of every variant over its own baseline, with its variance.

    The variance is the binomial (Katz log risk-ratio) form ``1/y_t - 1/x_t + 1/y_b - 1/x_b``;
    ``continuity`` is added to counts so a video with zero clicks in one arm stays finite.
    """
    num, den = METRICS[metric]
    base = cells[cells["variant"] == BASELINE][["video_id", num, den]].rename(columns={num: "y_b", den: "x_b"})
    arms = cells[cells["variant"] != BASELINE][["video_id", "variant", "industry", num, den]].rename(
        columns={num: "y_t", den: "x_t"}
    )
    out = arms.merge(base, on="video_id")
    out = out[(out["x_t"] > 0) & (out["x_b"] > 0)]
    yt, xt = out["y_t"] + continuity, out["x_t"] + continuity
    yb, xb = out["y_b"] + continuity, out["x_b"] + continuity
    out["log_lift"] = np.log((yt / xt) / (yb / xb))
    out["var"] = 1 / yt - 1 / xt + 1 / yb - 1 / xb
    return out


def select_doses(deltas: pd.DataFrame, windows: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One achieved_delta per (video, variant): its own window's, else the only row there is.

    ``windows``: each arm's window from the registry (:func:`dose_windows`); the registry's
    "full" is the check's "all" (:data:`CHECK_WINDOW`).
    """
    d = deltas.copy()
    wanted = {v: CHECK_WINDOW.get(w, w) for v, w in dict(VARIANT_WINDOW if windows is None else windows).items()}
    d["wanted"] = d["variant"].map(wanted)
    own = d[d["window"] == d["wanted"]] if "window" in d else d.iloc[0:0]
    counts = d.groupby(["video_id", "variant"])["achieved_delta"].transform("size")
    single = d[counts == 1]
    return pd.concat([own, single]).drop_duplicates(["video_id", "variant"])[["video_id", "variant", "achieved_delta"]]


def _dose_data(
    cells: pd.DataFrame, deltas: pd.DataFrame, metric: str, windows: Mapping[str, str] | None
) -> pd.DataFrame | None:
    """Per-video log lifts with their dose and weight; None when too thin for a slope."""
    chosen = select_doses(deltas, windows)
    data = video_variant_log_lifts(cells, metric).merge(chosen, on=["video_id", "variant"])
    data = data[np.isfinite(data["log_lift"]) & (data["var"] > 0)]
    if data["video_id"].nunique() < 3 or data["achieved_delta"].nunique() < 2:
        return None
    data["w"] = 1.0 / data["var"]
    return data


def _dose_models(data: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, formula) of the pooled slope and, when the data identify it, the within-variant slope.

    The pooled slope mixes the dose with each variant's own effect (boosts have both positive
    doses and positive lifts). Variant fixed effects keep only the variation of one variant's
    achieved change across videos: the dose-response a planted dose term is recovered by.
    A cluster-robust covariance needs more clusters (videos) than parameters; with fewer the
    within-variant interval is falsely narrow (4 demo videos, 7 parameters), so it is left out.
    """
    models = [("wls log_lift ~ achieved_delta, cluster=video", "log_lift ~ achieved_delta")]
    n_params_within = data["variant"].nunique() + 1
    if (
        data.groupby("variant")["achieved_delta"].nunique().max() >= 2
        and data["variant"].nunique() >= 2
        and data["video_id"].nunique() > n_params_within
    ):
        models.append(
            (
                "wls log_lift ~ achieved_delta + C(variant) (within variant), cluster=video",
                "log_lift ~ achieved_delta + C(variant)",
            )
        )
    return models


def _dose_slope(data: pd.DataFrame, formula: str, groups: np.ndarray, alpha: float) -> dict[str, object]:
    """The achieved_delta slope of one WLS model: CR2 + Satterthwaite df for few videos, else CR1 + t(G-1)."""
    g = data["video_id"].nunique()
    res = smf.wls(formula, data=data, weights=data["w"]).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
    )
    names = list(res.params.index)
    c = np.zeros(len(names))
    c[names.index("achieved_delta")] = 1.0
    if g < SMALL_SAMPLE_CLUSTERS:
        fit = cluster_wls(res.model.exog, res.model.endog, groups, data["w"].to_numpy())
        est = fit.contrast(c, alpha)
        slope, se, lo, hi, p = est["estimate"], est["se"], est["ci_low"], est["ci_high"], est["p_value"]
        df, method = est["df"], METHOD_CR2
        intercept = float(fit.beta[names.index("Intercept")])
    else:
        ci = res.conf_int(alpha=alpha).loc["achieved_delta"]
        slope, se = float(res.params["achieved_delta"]), float(res.bse["achieved_delta"])
        lo, hi, p = float(ci.iloc[0]), float(ci.iloc[1]), float(res.pvalues["achieved_delta"])
        df, method = float(g - 1), METHOD_CR1
        intercept = float(res.params["Intercept"])
    return {
        "slope": slope,
        "slope_se": se,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "df": df,
        "se_method": method,
        "intercept": intercept,
    }


def dose_response(
    cells: pd.DataFrame,
    deltas: pd.DataFrame | None,
    metric: str = "ctr",
    alpha: float = 0.05,
    windows: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """WLS of per-video log lift on achieved alignment change, clustered by video.

    Each (video, variant) takes the achieved_delta of the variant's own window
    (:data:`VARIANT_WINDOW`); when that window is missing but the pair has exactly one row,
    that row is used. Returns the pooled slope and, when a variant's achieved change varies
    across videos, the within-variant slope (variant fixed effects); an empty frame when the
    manipulation check is absent or too thin.
    """
    if deltas is None or deltas.empty:
        return pd.DataFrame()
    data = _dose_data(cells, deltas, metric, windows)
    if data is None:
        return pd.DataFrame()
    groups = pd.factorize(data["video_id"])[0]
    sizes = {"n_video_variants": int(len(data)), "n_videos": int(data["video_id"].nunique())}
    rows = [
        {"metric": metric, "model": label, **_dose_slope(data, formula, groups, alpha), **sizes}
        for label, formula in _dose_models(data)
    ]
    return pd.DataFrame(rows)
