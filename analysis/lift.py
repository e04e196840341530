"""Lift of each variant over baseline, pooled across videos with the video as the cluster.

The estimator for a rate metric is the ratio of sums ``R_v = sum_j y_vj / sum_j x_vj`` (CTR:
clicks/impressions, CVR: conversions/clicks, watch time: watch seconds/impressions). Its
cluster-level linearisation (the delta method) gives one influence value per video,
``a_vj = (y_vj - R_v x_vj) / X_v``; any contrast of rates (absolute lift ``R_t - R_b``) or of
log rates (relative lift ``log R_t - log R_b``, influence ``a_vj / R_v``) then has variance
``G/(G-1) * sum_j (c . a_j)^2`` over the G videos. Impressions of one video are correlated
(the ad itself drives CTR), and the same video appears in every arm, so this both inflates
the variance correctly and credits the pairing. The numbers agree with statsmodels' WLS and
Poisson-GLM fits with ``cov_type='cluster'`` (see tests), at a fraction of the cost.

Two designs, chosen by ``design``:

* ``paired`` (the platform's own: every video runs in every arm, the video is the cluster):
  one ``G/(G-1)`` factor over all G clusters, t with G-1 df;
* ``unpaired`` (randomised by user or impression: each cluster, named by ``cluster``, sits in
  exactly one arm): each arm's clusters carry their own ``G_a/(G_a-1)`` factor, as in Deng et
  al. (2018) and the deltatest package (one pooled factor is 0.56 % too small there), t with
  ``G_t + G_b - 2`` df.

With fewer than 30 clusters behind a contrast the CR1 factor is not enough: the lifts then come
from the equivalent WLS of cell rates on arm indicators (weights = denominators) with the CR2
covariance and Satterthwaite df (:mod:`analysis.small_sample`); the ``se_method`` column says
which was used. Relative-lift intervals are built on the log scale and mapped back, so they stay
asymmetric and never cross -100 %. A contrast that cannot be estimated (an arm without events,
without denominator, or with a single cluster) gets a row whose ``note`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from align_core.stimuli.plans import DEFAULT_VARIANTS, variant_names
from analysis.arms import BASELINE
from analysis.matched import arm_video_counts, fixed_effects_glm, matched_cells
from analysis.small_sample import METHOD_CR1, METHOD_CR2, SMALL_SAMPLE_CLUSTERS, ClusterFit, cluster_wls

__all__ = [
    "DESIGNS",
    "METRICS",
    "RatioInfluence",
    "arms_chi_square",
    "lift_table",
    "not_reported",
    "rate_fit",
    "ratio_influence",
]

DESIGNS = ("paired", "unpaired")
METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "cvr": ("conversions", "clicks"),
    "watch_time": ("watch_time_s_sum", "impressions"),
}


def not_reported(cells: pd.DataFrame, metric: str) -> str | None:
    """Why ``metric`` has no estimate because the export does not report a field it needs, or None.

    A field a mapping declared not reported is stored as NULL: summing it would invent zeros, so
    every row of that metric says "not reported" instead of carrying an estimate.
    """
    for column in METRICS[metric]:
        missing = cells[column].isna() if column in cells else pd.Series(True, index=cells.index)
        if missing.any():
            return (
                f"not reported: the export does not report {column} (stored as NULL in "
                f"{int(missing.sum())} of {len(cells)} video x arm cells), so {metric} is not estimated"
            )
    return None


def _not_reported_rows(
    cells: pd.DataFrame, metric: str, variants: Sequence[str], why: str, options: dict[str, object]
) -> list[dict[str, object]]:
    """Rows without an estimate for a metric the export does not report (videos: those with both arms)."""
    cluster, design = str(options["cluster"]), str(options["design"])
    return [
        {
            "metric": metric,
            "variant": v,
            "n_videos": int(matched_cells(cells, [BASELINE, v], cluster)[cluster].nunique()),
            "design": design,
            "note": why,
        }
        for v in variants
    ]


@dataclass(frozen=True)
class RatioInfluence:
    """Rates per variant and the per-cluster influence matrix of those rates."""

    rates: pd.Series  # index: variant
    totals_num: pd.Series
    totals_den: pd.Series
    influence: np.ndarray  # clusters x variants (absolute-rate influence), columns in rates.index order
    n_clusters: int
    design: str = "paired"
    cluster_arm: np.ndarray | None = None  # unpaired: the arm (column) each cluster sits in

    def cluster_factors(self) -> np.ndarray:
        """Small-sample factor per cluster: G/(G-1) (paired) or G_a/(G_a-1) of its arm (unpaired)."""
        g = self.n_clusters
        if self.design == "unpaired" and self.cluster_arm is not None:
            per_arm = np.bincount(self.cluster_arm, minlength=len(self.rates)).astype(float)
            g_a = per_arm[self.cluster_arm]
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(g_a > 1, g_a / (g_a - 1), np.nan)
        return np.full(g, g / (g - 1) if g > 1 else np.nan)

    def covariance(self, contrasts: np.ndarray, log_scale: bool = True) -> np.ndarray:
        """Cluster-robust covariance of contrasts of (log) rates; rows of ``contrasts`` weight variants."""
        c = np.atleast_2d(contrasts)
        with np.errstate(divide="ignore", invalid="ignore"):
            inf = self.influence / self.rates.to_numpy() if log_scale else self.influence
        used = np.flatnonzero(np.any(c != 0, axis=0))
        contrib = inf[:, used] @ c[:, used].T
        if self.n_clusters < 2:
            return np.full((contrib.shape[1], contrib.shape[1]), np.nan)
        f = self.cluster_factors()
        if self.design == "unpaired":  # only clusters of the arms in the contrast count
            keep = np.isin(self.cluster_arm, used)
            contrib, f = contrib[keep], f[keep]
        return contrib.T @ (f[:, None] * contrib)

    def variance(self, weights: dict[str, float], log_scale: bool = False) -> float:
        """Cluster-robust variance of ``sum_v w_v R_v`` (or of ``sum_v w_v log R_v``)."""
        c = np.array([weights.get(v, 0.0) for v in self.rates.index])
        return float(self.covariance(c, log_scale=log_scale)[0, 0])

    def clusters_in(self, variants: Sequence[str]) -> int:
        """Clusters behind a contrast of ``variants``: all (paired) or those in these arms (unpaired)."""
        if self.design == "unpaired" and self.cluster_arm is not None:
            cols = [list(self.rates.index).index(v) for v in variants]
            return int(np.isin(self.cluster_arm, cols).sum())
        return self.n_clusters

    def t_df(self, variants: Sequence[str]) -> float:
        """Reference df of the CR1 path: G-1 (paired) or G_t + G_b - 2 (unpaired)."""
        if self.design == "unpaired":
            return float(self.clusters_in(variants) - len(variants))
        return float(self.n_clusters - 1)


def ratio_influence(
    cells: pd.DataFrame, numerator: str, denominator: str, cluster: str = "video_id", design: str = "paired"
) -> RatioInfluence:
    """Rates and per-cluster influence values from cell sums (one row per cluster x variant).

    ``design="unpaired"`` requires each cluster to sit in one arm and raises ``ValueError``
    naming the clusters found in more than one.
    """
    if design not in DESIGNS:
        raise ValueError(f"design {design!r}: expected one of {DESIGNS}")
    vid_codes, vids = pd.factorize(cells[cluster])
    var_codes, variants = pd.factorize(cells["variant"], sort=True)
    shape = (len(vids), len(variants))
    num = np.zeros(shape)
    den = np.zeros(shape)
    np.add.at(num, (vid_codes, var_codes), cells[numerator].to_numpy(dtype=float))
    np.add.at(den, (vid_codes, var_codes), cells[denominator].to_numpy(dtype=float))
    cluster_arm = None
    if design == "unpaired":
        seen = np.zeros(shape, dtype=bool)
        seen[vid_codes, var_codes] = True
        arms_per_cluster = seen.sum(axis=1)
        if (arms_per_cluster > 1).any():
            bad = [str(v) for v in vids[arms_per_cluster > 1][:5]]
            raise ValueError(
                f"unpaired design: {cluster} {', '.join(bad)} appear(s) in more than one arm; "
                "a paired design (every cluster in every arm) needs design='paired'"
            )
        cluster_arm = seen.argmax(axis=1)
    tot_num, tot_den = num.sum(axis=0), den.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(tot_den > 0, tot_num / tot_den, np.nan)
        influence = np.nan_to_num((num - den * rates) / tot_den)
    index = pd.Index(variants, name="variant")
    return RatioInfluence(
        rates=pd.Series(rates, index=index),
        totals_num=pd.Series(tot_num, index=index),
        totals_den=pd.Series(tot_den, index=index),
        influence=influence,
        n_clusters=int(len(vids)),
        design=design,
        cluster_arm=cluster_arm,
    )


def rate_fit(
    cells: pd.DataFrame, numerator: str, denominator: str, variants: pd.Index, cluster: str = "video_id"
) -> ClusterFit:
    """WLS of cell rates on arm indicators (weights = denominators), clustered: the ratio estimator
    as a regression, so that CR2 and Satterthwaite df apply. Coefficients are the arm rates in
    ``variants`` order."""
    data = cells[cells[denominator] > 0]
    codes = pd.Categorical(data["variant"], categories=list(variants)).codes
    x = np.zeros((len(data), len(variants)))
    x[np.arange(len(data)), codes] = 1.0
    den = data[denominator].to_numpy(dtype=float)
    return cluster_wls(x, data[numerator].to_numpy(dtype=float) / den, data[cluster].to_numpy(), den)


def _iid_test(metric: str, totals: pd.DataFrame, variant: str) -> tuple[float, float, float]:
    """Unclustered test statistic, p-value and variance of the absolute lift (for the design effect).

    ``totals`` holds the metric's sums per variant (index: variant).
    """
    num, den = METRICS[metric]
    t, b = totals.loc[variant], totals.loc[BASELINE]
    if metric in ("ctr", "cvr"):
        count = np.array([t[num], b[num]], dtype=float)
        nobs = np.array([t[den], b[den]], dtype=float)
        if nobs.min() <= 0 or count.sum() <= 0 or count.sum() >= nobs.sum():
            return float("nan"), float("nan"), float("nan")
        z, p = proportions_ztest(count, nobs)
        p1, p0 = count / nobs
        var = p1 * (1 - p1) / nobs[0] + p0 * (1 - p0) / nobs[1]
        return float(z), float(p), float(var)
    # watch time: Welch z from sums and sums of squares per impression
    out = []
    for part in (t, b):
        n, s, ss = float(part["impressions"]), float(part["watch_time_s_sum"]), float(part["watch_time_s_sumsq"])
        if n < 2:
            return float("nan"), float("nan"), float("nan")
        out.append((s / n, max((ss - s * s / n) / (n - 1), 0.0) / n))
    (m1, v1), (m0, v0) = out
    var = v1 + v0
    z = (m1 - m0) / np.sqrt(var)
    return float(z), float(2 * stats.norm.sf(abs(z))), float(var)


def _not_estimable(metric: str, inf: RatioInfluence, variant: str, num: str, den: str) -> str | None:
    """Why a lift of ``variant`` over baseline cannot be estimated, or None."""
    for arm in (BASELINE, variant):
        if not inf.totals_den[arm] > 0:
            return f"{arm} has no {den}: {metric} undefined"
    if inf.totals_num[BASELINE] == 0 and inf.totals_num[variant] == 0:
        return f"no {num} in either arm ({inf.totals_den[BASELINE]:.0f} / {inf.totals_den[variant]:.0f} {den}): no lift to estimate"
    if inf.clusters_in([BASELINE, variant]) < 2:
        n = inf.clusters_in([BASELINE, variant])
        return f"fewer than 2 clusters per comparison ({n} video(s) with both arms): no cluster-robust variance"
    if inf.design == "unpaired" and inf.cluster_arm is not None:
        cols = list(inf.rates.index)
        for arm in (BASELINE, variant):
            n = int((inf.cluster_arm == cols.index(arm)).sum())
            if n < 2:
                return f"unpaired design: {arm} has {n} cluster(s); each arm needs 2 for a variance"
    return None


@dataclass
class _MetricLifts:
    """One metric's rates, shared by every variant's lift row; the CR2 regression is fitted once, on demand."""

    metric: str
    cells: pd.DataFrame
    inf: RatioInfluence
    totals: pd.DataFrame
    alpha: float
    cluster: str
    small_sample: bool | None
    _fit: ClusterFit | None = None

    @property
    def num(self) -> str:
        return METRICS[self.metric][0]

    @property
    def den(self) -> str:
        return METRICS[self.metric][1]

    def fit(self) -> ClusterFit:
        if self._fit is None:
            self._fit = rate_fit(self.cells, self.num, self.den, self.inf.rates.index, self.cluster)
        return self._fit

    def cr2_errors(self, variant: str, log_ratio: float) -> tuple[float, float, float, str]:
        """(abs SE, log SE, df, method) from the WLS fit: CR2 with Satterthwaite df."""
        inf, fit = self.inf, self.fit()
        cols = list(inf.rates.index)
        rt, rb = inf.rates[variant], inf.rates[BASELINE]
        log_se = float("nan")
        c = np.zeros(len(cols))
        c[cols.index(variant)], c[cols.index(BASELINE)] = 1.0, -1.0
        res = fit.contrast(c, self.alpha)
        abs_se, df = res["se"], res["df"]
        if np.isfinite(log_ratio):
            c_log = np.zeros(len(cols))
            c_log[cols.index(variant)], c_log[cols.index(BASELINE)] = 1.0 / rt, -1.0 / rb
            res_log = fit.contrast(c_log, self.alpha)
            log_se, df = res_log["se"], res_log["df"]
        method = METHOD_CR2 if inf.design == "paired" else METHOD_CR2 + " (unpaired)"
        if fit.full_leverage:
            method += "; a cluster carries an arm alone (leverage 1): CR2 uses a pseudo-inverse there"
        return abs_se, log_se, df, method

    def cr1_errors(self, variant: str, log_ratio: float) -> tuple[float, float, float, str]:
        """(abs SE, log SE, df, method) from the delta-method cluster influence (CR1 factors)."""
        inf = self.inf
        w = {variant: 1.0, BASELINE: -1.0}
        abs_se = float(np.sqrt(inf.variance(w)))
        log_se = float(np.sqrt(inf.variance(w, log_scale=True))) if np.isfinite(log_ratio) else float("nan")
        df = inf.t_df([BASELINE, variant])
        method = METHOD_CR1 if inf.design == "paired" else "CR1 per arm (G_a/(G_a-1)) + t(G_t+G_b-2)"
        return abs_se, log_se, df, method

    def row(self, variant: str) -> dict[str, object]:
        """The lift row of ``variant`` over the control arm (lift_table's columns)."""
        inf, num = self.inf, self.num
        rb, rt = inf.rates[BASELINE], inf.rates[variant]
        g = inf.clusters_in([BASELINE, variant])
        use_cr2 = self.small_sample if self.small_sample is not None else g < SMALL_SAMPLE_CLUSTERS
        why = _not_estimable(self.metric, inf, variant, num, self.den)
        abs_lift = rt - rb
        rel = rt / rb - 1 if rb > 0 else float("nan")
        log_ratio = float(np.log(rt / rb)) if rt > 0 and rb > 0 else float("nan")
        abs_se = log_se = df = float("nan")
        method = ""
        if why is None:
            errors = self.cr2_errors if use_cr2 else self.cr1_errors
            abs_se, log_se, df, method = errors(variant, log_ratio)
        if why is None and np.isfinite(log_ratio) and not log_se > 0:
            why = "the log ratio has zero variance across clusters: no test"
        if why is None and not np.isfinite(log_ratio):
            zero = BASELINE if not rb > 0 else variant
            why = f"{zero} has 0 {num}: relative lift and its test undefined (absolute lift shown)"
        crit = stats.t.ppf(1 - self.alpha / 2, df) if np.isfinite(df) and df > 0 else float("nan")
        t_stat = log_ratio / log_se if np.isfinite(log_ratio) and log_se > 0 else float("nan")
        p = float(2 * stats.t.sf(abs(t_stat), df)) if np.isfinite(t_stat) and np.isfinite(df) else float("nan")
        iid_z, iid_p, iid_var = _iid_test(self.metric, self.totals, variant)
        var_abs = abs_se**2
        return {
            "metric": self.metric,
            "variant": variant,
            "baseline_rate": rb,
            "variant_rate": rt,
            "abs_lift": abs_lift,
            "abs_se": abs_se,
            "abs_ci_low": abs_lift - crit * abs_se,
            "abs_ci_high": abs_lift + crit * abs_se,
            "rel_lift": rel,
            "rel_se": (1 + rel) * log_se,
            "rel_ci_low": np.exp(log_ratio - crit * log_se) - 1,
            "rel_ci_high": np.exp(log_ratio + crit * log_se) - 1,
            "log_ratio": log_ratio,
            "log_se": log_se,
            "t_stat": t_stat,
            "df": df,
            "p_value": p,
            "se_method": method,
            "design": inf.design,
            "iid_z": iid_z,
            "iid_p_value": iid_p,
            "design_effect": var_abs / iid_var if iid_var and iid_var > 0 else float("nan"),
            "n_videos": g,
            "baseline_num": inf.totals_num[BASELINE],
            "baseline_den": inf.totals_den[BASELINE],
            "variant_num": inf.totals_num[variant],
            "variant_den": inf.totals_den[variant],
            "note": "" if why is None else "not estimable: " + why,
        }


def _treatment_arms(present: set[str], variants: Sequence[str] | None) -> list[str]:
    """The arms to compare with the control: ``variants`` (or registry order, unknown arms last) that ran."""
    canonical = {v: i for i, v in enumerate(variant_names(DEFAULT_VARIANTS))}  # registry order
    order = sorted(present, key=lambda v: (canonical.get(v, len(canonical)), v))
    return [v for v in (variants or order) if v != BASELINE and v in present]


def _no_pair_row(metric: str, variant: str, n_matched: int) -> dict[str, object]:
    """A lift row without an estimate: fewer than 2 videos ran both arms."""
    return {
        "metric": metric,
        "variant": variant,
        "n_videos": n_matched,
        "note": f"not estimable: {n_matched} video(s) with both {variant} and {BASELINE}; a contrast needs 2",
    }


def _metric_rows(
    cells: pd.DataFrame, variant_list: Sequence[str], metric: str, options: dict[str, object]
) -> list[dict[str, object]]:
    """Lift rows of ``variant_list`` for one metric on ``cells`` (already restricted as wanted)."""
    num, den = METRICS[metric]
    design, cluster = str(options["design"]), str(options["cluster"])
    sums = [c for c in _SUMS if c in cells]
    totals = cells.groupby("variant")[sums].sum()
    inf = ratio_influence(cells, num, den, cluster=cluster, design=design)
    lifts = _MetricLifts(metric, cells, inf, totals, float(options["alpha"]), cluster, options["small_sample"])  # type: ignore[arg-type]
    return [lifts.row(variant) for variant in variant_list]


def _disjoint_row(cells: pd.DataFrame, variant: str, metric: str, options: dict[str, object]) -> dict[str, object]:
    """The two arms share no video (each cluster saw one arm): compare them as an unpaired design."""
    both = cells[cells["variant"].isin([BASELINE, variant]) & (cells["impressions"] > 0)]
    if set(both["variant"]) != {BASELINE, variant}:
        return _no_pair_row(metric, variant, 0)
    row = _metric_rows(both, [variant], metric, {**options, "design": "unpaired"})[0]
    row["design"] = "unpaired (the arms share no video)"
    return row


_SUMS = ("impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq")


def _matched_rows(cells: pd.DataFrame, variant: str, metric: str, options: dict[str, object]) -> dict[str, object]:
    """The lift row of ``variant`` over the control on the videos where both ran, with the GLM check."""
    cluster = str(options["cluster"])
    pair = matched_cells(cells, [BASELINE, variant], cluster)
    g = pair[cluster].nunique()
    if g == 0:
        return _disjoint_row(cells, variant, metric, options)
    row = _metric_rows(pair, [variant], metric, options)[0]
    if options.get("glm"):
        num, den = METRICS[metric]
        row.update(fixed_effects_glm(pair, variant, BASELINE, num, den, float(options["alpha"])))  # type: ignore[arg-type]
    return row


def lift_table(
    cells: pd.DataFrame,
    alpha: float = 0.05,
    variants: Sequence[str] | None = None,
    metrics: Sequence[str] = tuple(METRICS),
    design: str = "paired",
    cluster: str = "video_id",
    small_sample: bool | None = None,
    glm: bool = False,
) -> pd.DataFrame:
    """Absolute and relative lift of every variant over baseline for each metric.

    ``cells`` holds one experiment's sums per cluster x variant (``queries.cell_totals``: the
    video is the cluster). ``design``: "paired" or "unpaired" (module docstring). In the paired
    design every contrast is *matched*: it uses only the videos where both the variant and the
    control ran (``analysis.matched``), and ``n_videos`` counts them; ``n_videos_variant`` and
    ``n_videos_control`` say how many videos each arm ran in at all. ``glm``: add the video
    fixed-effects GLM cross-check (columns glm_rel_lift, glm_ci_low, glm_ci_high, glm_p_value).
    ``small_sample``: force (True) or forbid (False) CR2 + Satterthwaite df; by default it is
    used below 30 clusters.
    Columns: metric, variant, baseline_rate, variant_rate, abs_lift, abs_se, abs_ci_low,
    abs_ci_high, rel_lift, rel_se, rel_ci_low, rel_ci_high, log_ratio, log_se, t_stat, df,
    p_value (of the log ratio), se_method, design, iid_z, iid_p_value (two-proportion z-test /
    Welch z that ignore clustering), design_effect (cluster variance / iid variance), n_videos
    (clusters), the numerator/denominator totals of both arms and ``note`` (why a row has no
    estimate).
    """
    present = set(cells["variant"])
    if BASELINE not in present:
        raise ValueError("no baseline rows: lift needs the baseline arm")
    variants = _treatment_arms(present, variants)
    options: dict[str, object] = {
        "alpha": alpha,
        "design": design,
        "cluster": cluster,
        "small_sample": small_sample,
        "glm": glm,
    }
    rows: list[dict[str, object]] = []
    for metric in metrics:
        why = not_reported(cells, metric)
        if why is not None:
            rows.extend(_not_reported_rows(cells, metric, variants, why, options))
        elif design == "paired":
            rows.extend(_matched_rows(cells, variant, metric, options) for variant in variants)
        else:
            rows.extend(_metric_rows(cells, variants, metric, options))
    out = pd.DataFrame(rows)
    counts = arm_video_counts(cells, cluster) if len(cells) else pd.Series(dtype=int)
    out["n_videos_variant"] = out["variant"].map(counts).fillna(0).astype(int)
    out["n_videos_control"] = int(counts.get(BASELINE, 0))
    return out


def _arms_not_estimable(totals: pd.DataFrame, num: str, den: str) -> str | None:
    """Why no test of k proportions is possible on these arm totals, or None."""
    if len(totals) < 2:
        return "fewer than 2 arms with " + den
    if totals[num].sum() == 0:
        return f"no {num} in any arm"
    if (totals[num] == totals[den]).all():
        return f"every {den[:-1]} had {num}"
    return None


def _pearson_row(base: dict[str, object], totals: pd.DataFrame, num: str, den: str) -> dict[str, object]:
    """Pearson's chi-square on arms x (events, non-events): the textbook reference, blind to clustering."""
    table = np.column_stack([totals[num], totals[den] - totals[num]]).astype(float)
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return {
        **base,
        "test": "pearson",
        "statistic": float(chi2),
        "df": float(dof),
        "p_value": float(p),
        "method": "Pearson chi-square, arms x (events, non-events); ignores clustering",
    }


def _cr2_joint_row(base: dict[str, object], fit: ClusterFit, cm: np.ndarray, g: int) -> dict[str, object]:
    """Joint test of every arm = control on the CR2 covariance (Hotelling-T^2 F)."""
    test = fit.joint_test(cm)
    if not np.isfinite(test["p_value"]):
        return {
            **base,
            "test": "cluster",
            "note": f"not estimable: {g} clusters cannot support {len(cm)} joint restrictions",
        }
    return {
        **base,
        "test": "cluster",
        "statistic": test["f"],
        "df": test["df1"],
        "df2": test["df2"],
        "p_value": test["p_value"],
        "method": f"{METHOD_CR2}; Hotelling F({test['df1']:.0f}, {test['df2']:.0f})",
    }


def _cr1_wald_row(base: dict[str, object], inf: RatioInfluence, cm: np.ndarray) -> dict[str, object]:
    """Joint Wald chi-square of every arm = control on the delta-method (CR1) covariance."""
    est = cm @ inf.rates.to_numpy()
    q = len(cm)
    cov = inf.covariance(cm, log_scale=False)
    if np.linalg.matrix_rank(cov) < q:
        return {**base, "test": "cluster", "note": "not estimable: singular cluster-robust covariance"}
    wald = float(est @ np.linalg.solve(cov, est))
    return {
        **base,
        "test": "cluster",
        "statistic": wald,
        "df": float(q),
        "p_value": float(stats.chi2.sf(wald, q)),
        "method": f"{METHOD_CR1}; Wald chi-square",
    }


def arms_chi_square(
    cells: pd.DataFrame,
    metric: str = "ctr",
    cluster: str = "video_id",
    design: str = "paired",
    small_sample: bool | None = None,
) -> pd.DataFrame:
    """Do the arms' rates differ at all? A test of k > 2 proportions, two ways.

    ``pearson``: Pearson's chi-square on the arms x (events, non-events) table (k-1 df). It
    treats impressions as independent, so with clustered data it over-rejects; it is shown as
    the textbook reference. ``cluster``: the joint Wald test that every arm's rate equals the
    baseline's, on the cluster-robust covariance (CR2 with a Hotelling-T^2 F below 30 clusters,
    otherwise CR1 with chi-square(k-1)): the one to read.
    """
    num, den = METRICS[metric]
    if metric not in ("ctr", "cvr"):
        raise ValueError(f"{metric}: a test of proportions needs a count metric (ctr or cvr)")
    unreported = not_reported(cells, metric)
    totals = cells.groupby("variant")[[num, den]].sum(min_count=1)
    totals = totals[totals[den] > 0]
    base = {
        "metric": metric,
        "k_arms": len(totals),
        "statistic": np.nan,
        "df": np.nan,
        "df2": np.nan,
        "p_value": np.nan,
        "method": "",
        "note": "",
    }
    why = unreported or _arms_not_estimable(totals, num, den)
    if why is not None:
        note = why if unreported else "not estimable: " + why
        return pd.DataFrame([{**base, "test": t, "note": note} for t in ("pearson", "cluster")])
    rows = [_pearson_row(base, totals, num, den)]
    inf = ratio_influence(cells, num, den, cluster=cluster, design=design)
    cols = list(inf.rates.index)
    others = [v for v in totals.index if v != BASELINE]
    if BASELINE not in totals.index or not others:
        rows.append({**base, "test": "cluster", "note": "not estimable: no baseline arm to compare against"})
        return pd.DataFrame(rows)
    cm = np.zeros((len(others), len(cols)))
    for i, v in enumerate(others):
        cm[i, cols.index(v)], cm[i, cols.index(BASELINE)] = 1.0, -1.0
    g = inf.n_clusters
    if small_sample if small_sample is not None else g < SMALL_SAMPLE_CLUSTERS:
        rows.append(_cr2_joint_row(base, rate_fit(cells, num, den, inf.rates.index, cluster), cm, g))
    else:
        rows.append(_cr1_wald_row(base, inf, cm))
    return pd.DataFrame(rows)
