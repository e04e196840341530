"""Single-creative A/B tests: one creative per arm, no video dimension to cluster on.

A classic ad test (arm A shows one ad, arm B another) has no repeated videos, so no
cluster-robust variance exists; the textbook analysis treats impressions (for CVR, clicks) as
independent Bernoulli trials: the arm rates, the two-proportion z-test of each arm against the
control with a Katz log rate-ratio interval, a Welch z for watch time, and Pearson's k-arm
chi-square. Every row says its errors are iid: if the platform served impressions in correlated
batches these intervals are too narrow, and nothing in such data can tell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from analysis.arms import BASELINE
from analysis.lift import METRICS, not_reported

__all__ = [
    "IID_METHOD",
    "is_single_creative",
    "single_creative_lifts",
]

IID_METHOD = "iid errors (one creative per arm: impressions treated as independent, no clustering possible)"


def is_single_creative(cells: pd.DataFrame) -> bool:
    """True when there is no video dimension to cluster on: under 2 videos, or every video in one arm."""
    ran = cells[cells["impressions"] > 0]
    if ran["video_id"].nunique() < 2:
        return True
    return bool((ran.groupby("video_id")["variant"].nunique() == 1).all())


def _log_ratio_var(metric: str, t: pd.Series, b: pd.Series) -> float:
    """Variance of log(rate_t / rate_b) with independent trials (Katz; delta method for watch time)."""
    num, den = METRICS[metric]
    if metric != "watch_time":
        return float(1 / t[num] - 1 / t[den] + 1 / b[num] - 1 / b[den])
    out = 0.0
    for part in (t, b):
        n, s, ss = float(part["impressions"]), float(part["watch_time_s_sum"]), float(part["watch_time_s_sumsq"])
        mean, var = s / n, max((ss - s * s / n) / (n - 1), 0.0)
        out += var / n / mean**2
    return out


def _test(metric: str, t: pd.Series, b: pd.Series) -> tuple[float, float]:
    """(z, p) of the two-proportion z-test (pooled variance) or of Welch's z for watch time."""
    num, den = METRICS[metric]
    if metric != "watch_time":
        z, p = proportions_ztest(np.array([t[num], b[num]], float), np.array([t[den], b[den]], float))
        return float(z), float(p)
    z = np.log(t[num] / t[den] / (b[num] / b[den])) / np.sqrt(_log_ratio_var(metric, t, b))
    return float(z), float(2 * stats.norm.sf(abs(z)))


def _row(metric: str, variant: str, totals: pd.DataFrame, alpha: float) -> dict[str, object]:
    num, den = METRICS[metric]
    t, b = totals.loc[variant], totals.loc[BASELINE]
    base = {"metric": metric, "variant": variant, "design": "single creative", "se_method": IID_METHOD}
    counts = {"baseline_num": b[num], "baseline_den": b[den], "variant_num": t[num], "variant_den": t[den]}
    if min(t[den], b[den]) <= 1 or min(t[num], b[num]) <= 0:
        return {**base, **counts, "note": f"not estimable: an arm has no {num} (or no {den})"}
    rt, rb = t[num] / t[den], b[num] / b[den]
    log_ratio, log_se = float(np.log(rt / rb)), float(np.sqrt(_log_ratio_var(metric, t, b)))
    z_crit = stats.norm.ppf(1 - alpha / 2)
    z, p = _test(metric, t, b)
    return {
        **base,
        "baseline_rate": rb,
        "variant_rate": rt,
        "abs_lift": rt - rb,
        "rel_lift": rt / rb - 1,
        "rel_ci_low": float(np.expm1(log_ratio - z_crit * log_se)),
        "rel_ci_high": float(np.expm1(log_ratio + z_crit * log_se)),
        "log_ratio": log_ratio,
        "log_se": log_se,
        "t_stat": z,
        "df": np.inf,
        "p_value": p,
        "iid_z": z,
        "iid_p_value": p,
        "n_videos": int(totals.attrs.get("n_videos", 0)),
        **counts,
        "note": "",
    }


def single_creative_lifts(
    cells: pd.DataFrame, alpha: float = 0.05, variants: Sequence[str] | None = None
) -> pd.DataFrame:
    """Lift rows (``lift_table`` columns) of every arm over the control with iid errors."""
    if BASELINE not in set(cells["variant"]):
        raise ValueError("no baseline rows: lift needs the baseline arm")
    sums = [c for c in ("impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq") if c in cells]
    totals = cells.groupby("variant")[sums].sum()
    totals.attrs["n_videos"] = cells["video_id"].nunique()
    arms = [v for v in (variants or sorted(totals.index)) if v != BASELINE and v in totals.index]
    metrics = [m for m in METRICS if set(METRICS[m]) <= set(totals.columns)]
    rows = []
    for metric in metrics:
        why = not_reported(cells, metric)  # a NULL field summed would be an invented 0
        rows += [_row(metric, v, totals, alpha) if why is None else _unreported_row(metric, v, why) for v in arms]
    return pd.DataFrame(rows)


def _unreported_row(metric: str, variant: str, why: str) -> dict[str, object]:
    return {"metric": metric, "variant": variant, "design": "single creative", "se_method": IID_METHOD, "note": why}
