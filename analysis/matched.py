"""Which videos a contrast may use: matched pairs, complete blocks, and a fixed-effects GLM check.

Eligibility (a variant enters the experiment only where it passed its checks) leaves arms with
different sets of videos. Comparing an arm's eligible videos with the control's full set mixes
the effect with the videos' composition, so every arm-vs-control contrast uses only the videos
where both arms ran (a *matched* contrast). The complete-block alternative keeps only videos with
every arm. A count GLM with one intercept per video (video fixed effects: Poisson log link with
the denominator as exposure, so its estimate is a rate ratio like the ratio of sums; quasi
scale from Pearson's chi-square and a t(G-1) reference) is the model-based cross-check.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

__all__ = [
    "arm_video_counts",
    "complete_block_cells",
    "fixed_effects_glm",
    "matched_cells",
]


def _ran(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of arms that were served (impressions > 0)."""
    return cells[cells["impressions"] > 0] if "impressions" in cells else cells


def matched_cells(cells: pd.DataFrame, arms: Sequence[str], cluster: str = "video_id") -> pd.DataFrame:
    """Cells of ``arms`` only, in the clusters where every one of ``arms`` ran (impressions > 0)."""
    ran = _ran(cells[cells["variant"].isin(list(arms))])
    per_cluster = ran.groupby(cluster)["variant"].nunique()
    keep = per_cluster.index[per_cluster == len(set(arms))]
    return ran[ran[cluster].isin(keep)]


def complete_block_cells(cells: pd.DataFrame, cluster: str = "video_id") -> pd.DataFrame:
    """Cells of the clusters (videos) in which every arm of the experiment ran."""
    ran = _ran(cells)
    return matched_cells(ran, sorted(set(ran["variant"])), cluster)


def arm_video_counts(cells: pd.DataFrame, cluster: str = "video_id") -> pd.Series:
    """Videos each arm ran in (index: variant)."""
    return _ran(cells).groupby("variant")[cluster].nunique()


def fixed_effects_glm(
    pair: pd.DataFrame, variant: str, control: str, numerator: str, denominator: str, alpha: float = 0.05
) -> dict[str, float]:
    """Relative lift of ``variant`` over ``control`` from a count GLM with video fixed effects.

    ``pair``: matched cells of the two arms. Log link, log(denominator) offset, quasi (Pearson) scale with a t reference on
    the residual df (G - 1 for G matched videos), so between-video variation of the effect widens
    the interval as the cluster-robust estimators do. NaN values when not identified.
    """
    nan = {"glm_rel_lift": np.nan, "glm_ci_low": np.nan, "glm_ci_high": np.nan, "glm_p_value": np.nan}
    data = pair[pair[denominator] > 0]
    g = data["video_id"].nunique()
    if g < 2 or data.groupby("variant")[numerator].sum().min() == 0:
        return nan
    videos = pd.get_dummies(data["video_id"].astype(str), dtype=float)
    x = np.column_stack([(data["variant"] == variant).to_numpy(dtype=float), videos.to_numpy()])
    endog = data[numerator].to_numpy(dtype=float)
    offset = np.log(data[denominator].to_numpy(dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = sm.GLM(endog, x, family=sm.families.Poisson(), offset=offset).fit(scale="X2")
        except (ValueError, np.linalg.LinAlgError):
            return nan
    df = float(res.df_resid)
    beta, se = float(res.params[0]), float(res.bse[0])
    if not (df > 0 and np.isfinite(se) and se > 0):
        return nan
    crit = stats.t.ppf(1 - alpha / 2, df)
    return {
        "glm_rel_lift": float(np.expm1(beta)),
        "glm_ci_low": float(np.expm1(beta - crit * se)),
        "glm_ci_high": float(np.expm1(beta + crit * se)),
        "glm_p_value": float(2 * stats.t.sf(abs(beta / se), df)),
    }
