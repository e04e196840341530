"""When attention lands: early vs middle vs late contrasts, and dose-response on alignment.

Timing contrasts compare the boost variants with each other directly (log-rate differences,
e.g. ``log CTR_early - log CTR_late``) using the same per-video influence values as the lift
table, so their covariance across arms (the same videos run every arm) is accounted for. A
joint Wald test asks whether the three timings differ at all.

Dose-response regresses each video-variant's log lift over its own baseline on the achieved
alignment change recorded by the manipulation check (weighted by inverse binomial variance,
clustered by video): if moving attention onto the product causes clicks, lift should grow
with the achieved change, whichever variant produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from align_core.variants import DEFAULT_VARIANTS, dose_windows, timing_variants
from analysis.lift import BASELINE, METRICS, ratio_influence

# Derived from the variant registry (the defaults here; the report passes each experiment's).
TIMING_VARIANTS: tuple[str, ...] = timing_variants(DEFAULT_VARIANTS)
# The window whose alignment change is the dose of each variant (manipulation_check.window).
VARIANT_WINDOW: dict[str, str] = dose_windows(DEFAULT_VARIANTS)


def timing_contrasts(cells: pd.DataFrame, metric: str = "ctr", alpha: float = 0.05,
                     variants: Sequence[str] | None = None) -> pd.DataFrame:
    """Pairwise ratios of the timing variants' rates plus a joint equality test (row 'joint').

    ``variants``: the registry's timing arms, early to late (:func:`timing_variants`).
    """
    order = TIMING_VARIANTS if variants is None else tuple(variants)
    present = [v for v in order if v in set(cells["variant"])]
    if len(present) < 2:
        return pd.DataFrame()
    num, den = METRICS[metric]
    inf = ratio_influence(cells, num, den)
    g = inf.n_clusters
    crit = stats.t.ppf(1 - alpha / 2, g - 1)
    cols = list(inf.rates.index)
    rows = []
    for a, b in combinations(present, 2):
        c = np.zeros(len(cols))
        c[cols.index(a)], c[cols.index(b)] = 1.0, -1.0
        est = float(np.log(inf.rates[a] / inf.rates[b]))
        se = float(np.sqrt(inf.covariance(c)[0, 0]))
        rows.append({"metric": metric, "contrast": f"{a} vs {b}", "log_ratio": est, "log_se": se,
                     "ratio": np.exp(est), "ratio_ci_low": np.exp(est - crit * se),
                     "ratio_ci_high": np.exp(est + crit * se),
                     "statistic": est / se, "df": g - 1, "p_value": float(2 * stats.t.sf(abs(est / se), g - 1))})
    # joint: all present timings equal (k-1 contrasts against the first). A cluster-robust
    # covariance of k-1 contrasts has rank at most (clusters - 1): with too few videos the joint
    # test is not estimable and is left out rather than inverted.
    if g - 1 < len(present) - 1:
        return pd.DataFrame(rows)
    contrasts = np.zeros((len(present) - 1, len(cols)))
    for i, v in enumerate(present[1:]):
        contrasts[i, cols.index(present[0])], contrasts[i, cols.index(v)] = 1.0, -1.0
    est = contrasts @ np.log(inf.rates.to_numpy())
    cov = inf.covariance(contrasts)
    if np.linalg.matrix_rank(cov) < len(est):
        return pd.DataFrame(rows)
    wald = float(est @ np.linalg.solve(cov, est))
    rows.append({"metric": metric, "contrast": "joint: " + " = ".join(present), "log_ratio": np.nan,
                 "log_se": np.nan, "ratio": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan,
                 "statistic": wald, "df": len(present) - 1, "p_value": float(stats.chi2.sf(wald, len(present) - 1))})
    return pd.DataFrame(rows)


def video_variant_log_lifts(cells: pd.DataFrame, metric: str = "ctr", continuity: float = 0.5) -> pd.DataFrame:
    """Each video's log rate ratio of every variant over its own baseline, with its variance.

    The variance is the binomial (Katz log risk-ratio) form ``1/y_t - 1/x_t + 1/y_b - 1/x_b``;
    ``continuity`` is added to counts so a video with zero clicks in one arm stays finite.
    """
    num, den = METRICS[metric]
    base = cells[cells["variant"] == BASELINE][["video_id", num, den]].rename(columns={num: "y_b", den: "x_b"})
    arms = cells[cells["variant"] != BASELINE][["video_id", "variant", "industry", num, den]].rename(
        columns={num: "y_t", den: "x_t"})
    out = arms.merge(base, on="video_id")
    out = out[(out["x_t"] > 0) & (out["x_b"] > 0)]
    yt, xt = out["y_t"] + continuity, out["x_t"] + continuity
    yb, xb = out["y_b"] + continuity, out["x_b"] + continuity
    out["log_lift"] = np.log((yt / xt) / (yb / xb))
    out["var"] = 1 / yt - 1 / xt + 1 / yb - 1 / xb
    return out


def select_doses(deltas: pd.DataFrame, windows: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One achieved_delta per (video, variant): its own window's, else the only row there is.

    ``windows``: each arm's window from the registry (:func:`dose_windows`).
    """
    d = deltas.copy()
    d["wanted"] = d["variant"].map(dict(VARIANT_WINDOW if windows is None else windows))
    own = d[d["window"] == d["wanted"]] if "window" in d else d.iloc[0:0]
    counts = d.groupby(["video_id", "variant"])["achieved_delta"].transform("size")
    single = d[counts == 1]
    return pd.concat([own, single]).drop_duplicates(["video_id", "variant"])[["video_id", "variant", "achieved_delta"]]


def dose_response(cells: pd.DataFrame, deltas: pd.DataFrame | None, metric: str = "ctr",
                  alpha: float = 0.05, windows: Mapping[str, str] | None = None) -> pd.DataFrame:
    """WLS of per-video log lift on achieved alignment change, clustered by video.

    Each (video, variant) takes the achieved_delta of the variant's own window
    (:data:`VARIANT_WINDOW`); when that window is missing but the pair has exactly one row,
    that row is used. Returns the pooled slope and, when a variant's achieved change varies
    across videos, the within-variant slope (variant fixed effects); an empty frame when the
    manipulation check is absent or too thin.
    """
    if deltas is None or deltas.empty:
        return pd.DataFrame()
    chosen = select_doses(deltas, windows)
    data = video_variant_log_lifts(cells, metric).merge(chosen, on=["video_id", "variant"])
    data = data[np.isfinite(data["log_lift"]) & (data["var"] > 0)]
    if data["video_id"].nunique() < 3 or data["achieved_delta"].nunique() < 2:
        return pd.DataFrame()
    data["w"] = 1.0 / data["var"]
    groups = pd.factorize(data["video_id"])[0]
    models = [("wls log_lift ~ achieved_delta, cluster=video", "log_lift ~ achieved_delta")]
    # The pooled slope mixes the dose with each variant's own effect (boosts have both positive
    # doses and positive lifts). Variant fixed effects keep only the variation of one variant's
    # achieved change across videos: the dose-response a planted dose term is recovered by.
    # A cluster-robust covariance needs more clusters (videos) than parameters; with fewer the
    # within-variant interval is falsely narrow (4 demo videos, 7 parameters), so it is left out.
    n_params_within = data["variant"].nunique() + 1
    if (data.groupby("variant")["achieved_delta"].nunique().max() >= 2 and data["variant"].nunique() >= 2
            and data["video_id"].nunique() > n_params_within):
        models.append(("wls log_lift ~ achieved_delta + C(variant) (within variant), cluster=video",
                       "log_lift ~ achieved_delta + C(variant)"))
    rows = []
    for label, formula in models:
        # t intervals with (videos - 1) degrees of freedom, as for the lifts: few clusters.
        res = smf.wls(formula, data=data, weights=data["w"]).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
        ci = res.conf_int(alpha=alpha).loc["achieved_delta"]
        rows.append({
            "metric": metric, "model": label,
            "slope": float(res.params["achieved_delta"]), "slope_se": float(res.bse["achieved_delta"]),
            "ci_low": float(ci.iloc[0]), "ci_high": float(ci.iloc[1]),
            "p_value": float(res.pvalues["achieved_delta"]), "intercept": float(res.params["Intercept"]),
            "n_video_variants": int(len(data)), "n_videos": int(data["video_id"].nunique()),
        })
    return pd.DataFrame(rows)
