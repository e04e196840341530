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

__all__ = [
    "observational_table",
]

OBS_FORMULA = "{y} ~ attention_proportion + contrast + brightness + C(industry)"


def observational_table(scenes: pd.DataFrame | None, alpha: float = 0.05) -> pd.DataFrame:
    """OLS of ctr_mean and cvr_mean on attention_proportion with controls, clustered by video."""
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
        res = smf.ols(formula, data=data).fit(cov_type="cluster", cov_kwds={"groups": groups})
        ci = res.conf_int(alpha=alpha)
        for term in ("attention_proportion", "contrast", "brightness"):
            rows.append(
                {
                    "outcome": outcome,
                    "term": term,
                    "estimate": float(res.params[term]),
                    "se": float(res.bse[term]),
                    "ci_low": float(ci.loc[term].iloc[0]),
                    "ci_high": float(ci.loc[term].iloc[1]),
                    "p_value": float(res.pvalues[term]),
                    "n_scenes": int(res.nobs),
                    "n_videos": int(n_videos),
                    "r_squared": float(res.rsquared),
                    "model": formula + ", cluster=video",
                }
            )
    out = pd.DataFrame(rows)
    return out if out.empty else out.replace([np.inf, -np.inf], np.nan)
