"""Observational model of scene metadata: CTR/CVR on attention_proportion (not causal).

``alignment_score.csv`` relates the share of attention on the product in each scene to the
ad's outcomes. It motivates the experiment but cannot prove anything (better ads may both
frame the product well and sell more), so it is reported separately from the A/B lifts.
Scenes of one video share the video's outcomes, so standard errors are clustered by video.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from analysis.small_sample import METHOD_CR1, METHOD_CR2, SMALL_SAMPLE_CLUSTERS, ClusterFit, cluster_wls

__all__ = [
    "observational_table",
]

OBS_FORMULA = "{y} ~ attention_proportion + contrast + brightness + C(industry)"


def _term_estimate(
    res: object, fit: ClusterFit | None, names: list[str], term: str, alpha: float, n_videos: int
) -> dict[str, object]:
    """One coefficient: CR2 + Satterthwaite df below 30 videos (the report's small-sample rule),
    else CR1 with t(G-1)."""
    if fit is not None:
        c = np.zeros(len(names))
        c[names.index(term)] = 1.0
        est = fit.contrast(c, alpha)
        return {
            "term": term,
            "estimate": est["estimate"],
            "se": est["se"],
            "ci_low": est["ci_low"],
            "ci_high": est["ci_high"],
            "p_value": est["p_value"],
            "df": est["df"],
            "se_method": METHOD_CR2,
        }
    ci = res.conf_int(alpha=alpha)  # type: ignore[attr-defined]
    return {
        "term": term,
        "estimate": float(res.params[term]),  # type: ignore[attr-defined]
        "se": float(res.bse[term]),  # type: ignore[attr-defined]
        "ci_low": float(ci.loc[term].iloc[0]),
        "ci_high": float(ci.loc[term].iloc[1]),
        "p_value": float(res.pvalues[term]),  # type: ignore[attr-defined]
        "df": float(n_videos - 1),
        "se_method": METHOD_CR1,
    }


def observational_table(scenes: pd.DataFrame | None, alpha: float = 0.05) -> pd.DataFrame:
    """OLS of ctr_mean and cvr_mean on attention_proportion with controls, clustered by video.

    Below 30 videos the errors are CR2 with Satterthwaite df (as every other table); above, CR1
    with a t(G-1) reference (never a normal reference: 8 clusters once gave p = 2e-9)."""
    if scenes is None or scenes.empty:
        return pd.DataFrame()
    rows = []
    for outcome in ("ctr_mean", "cvr_mean"):
        data = scenes.dropna(subset=[outcome, "attention_proportion", "contrast", "brightness"])
        n_videos = data["video_id"].nunique()
        if n_videos < 3 or len(data) < 6:
            continue
        formula = OBS_FORMULA.format(y=outcome)
        if data["industry"].nunique() < 2:
            formula = formula.replace(" + C(industry)", "")
        groups = pd.factorize(data["video_id"])[0]
        res = smf.ols(formula, data=data).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
        small = n_videos < SMALL_SAMPLE_CLUSTERS
        fit = cluster_wls(res.model.exog, res.model.endog, groups) if small else None
        names = list(res.params.index)
        for term in ("attention_proportion", "contrast", "brightness"):
            rows.append(
                {
                    "outcome": outcome,
                    **_term_estimate(res, fit, names, term, alpha, n_videos),
                    "n_scenes": int(res.nobs),
                    "n_videos": int(n_videos),
                    "r_squared": float(res.rsquared),
                    "model": formula + ", cluster=video",
                }
            )
    out = pd.DataFrame(rows)
    return out if out.empty else out.replace([np.inf, -np.inf], np.nan)
