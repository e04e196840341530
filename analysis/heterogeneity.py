"""Heterogeneity of lift by industry: interaction GLM, per-industry lifts, Cochran's Q / I^2.

Three views answer "does the effect differ by industry?": a binomial GLM on aggregated counts
with a variant x industry interaction and a joint cluster-robust Wald test of the interaction
block; per-industry ratio-estimator lifts with multiplicity correction (Holm for the family-
wise error, Benjamini-Hochberg for the false discovery rate); and a meta-analytic Cochran's Q
and I^2 of the per-industry log lifts, per variant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

from analysis.lift import BASELINE, METRICS, lift_table

GLM_FORMULAS: dict[str, str] = {
    "ctr": "clicks + non_clicks ~ C(variant, Treatment('baseline')) * C(industry)",
    "cvr": "conversions + non_conversions ~ C(variant, Treatment('baseline')) * C(industry)",
}


def fit_interaction_glm(cells: pd.DataFrame, metric: str = "ctr") -> Any:
    """Binomial GLM on video x variant counts (endog = [successes, failures]), clustered by video."""
    data = cells.copy()
    data["non_clicks"] = data["impressions"] - data["clicks"]
    data["non_conversions"] = data["clicks"] - data["conversions"]
    data = data[(data["impressions"] > 0) if metric == "ctr" else (data["clicks"] > 0)]
    groups = pd.factorize(data["video_id"])[0]
    model = smf.glm(GLM_FORMULAS[metric], data=data, family=sm.families.Binomial())
    return model.fit(cov_type="cluster", cov_kwds={"groups": groups})


def interaction_wald(result: Any) -> dict[str, float]:
    """Joint Wald chi-square test that every variant x industry interaction is zero."""
    names = list(result.params.index)
    block = [i for i, n in enumerate(names) if ":" in n]
    if not block:
        return {"wald_chi2": float("nan"), "df": 0, "p_value": float("nan"), "rank_ok": False}
    restriction = np.zeros((len(block), len(names)))
    for row, col in enumerate(block):
        restriction[row, col] = 1.0
    kwds = getattr(result, "cov_kwds", None)
    n_groups = len(np.unique(kwds["groups"])) if isinstance(kwds, dict) and "groups" in kwds else None
    # a cluster-robust covariance has rank <= clusters - 1: with fewer clusters than
    # restrictions the joint test is not defined, so none is reported
    if n_groups is not None and n_groups - 1 < len(block):
        return {"wald_chi2": float("nan"), "df": int(len(block)), "p_value": float("nan"), "rank_ok": False}
    test = result.wald_test(restriction, scalar=True, use_f=False)
    return {
        "wald_chi2": float(np.squeeze(test.statistic)),
        "df": int(len(block)),
        "p_value": float(np.squeeze(test.pvalue)),
        "rank_ok": True,
    }


def industry_lifts(cells: pd.DataFrame, metric: str = "ctr", alpha: float = 0.05,
                   min_videos: int = 3) -> pd.DataFrame:
    """Per-industry lift of every variant with Holm and BH adjusted p-values across the family.

    Industries with fewer than ``min_videos`` videos get no estimate (a cluster-robust
    variance from one or two clusters is meaningless).
    """
    frames = []
    for industry, part in cells.groupby("industry"):
        if part["video_id"].nunique() < min_videos or BASELINE not in set(part["variant"]):
            continue
        table = lift_table(part, alpha=alpha, metrics=(metric,))
        table.insert(0, "industry", industry)
        frames.append(table)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    ok = out["p_value"].notna()
    out["p_holm"] = np.nan
    out["p_bh"] = np.nan
    if ok.any():
        out.loc[ok, "p_holm"] = multipletests(out.loc[ok, "p_value"], alpha=alpha, method="holm")[1]
        out.loc[ok, "p_bh"] = multipletests(out.loc[ok, "p_value"], alpha=alpha, method="fdr_bh")[1]
    return out


def cochran_q(industry_table: pd.DataFrame) -> pd.DataFrame:
    """Cochran's Q, its p-value, I^2 and DerSimonian-Laird tau^2 of per-industry log lifts, per variant."""
    rows = []
    if industry_table.empty:
        return pd.DataFrame(rows)
    for (metric, variant), part in industry_table.groupby(["metric", "variant"]):
        part = part[np.isfinite(part["log_ratio"]) & (part["log_se"] > 0)]
        if len(part) < 2:
            continue
        with np.errstate(invalid="ignore"):  # statsmodels' HKSJ scale is 0/0 when Q == 0
            res = combine_effects(part["log_ratio"].to_numpy(), part["log_se"].to_numpy() ** 2,
                                  row_names=list(part["industry"]), method_re="dl")
        q, df = float(res.q), int(res.df_resid)
        rows.append({"metric": metric, "variant": variant, "k_industries": len(part),
                     "cochran_q": q, "df": df, "p_value": float(stats.chi2.sf(q, df)),
                     # statsmodels reports (Q - df) / Q unclipped; Higgins & Thompson's I^2 is
                     # truncated at zero (no heterogeneity beyond chance)
                     "i2": max(0.0, float(res.i2)), "tau2": float(res.tau2),
                     "pooled_log_ratio_fe": float(res.mean_effect_fe),
                     "pooled_log_ratio_re": float(res.mean_effect_re)})
    return pd.DataFrame(rows)


def heterogeneity_tables(cells: pd.DataFrame, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-industry lifts for CTR and CVR, test summary: GLM interaction Wald + Cochran's Q)."""
    per_industry = []
    tests = []
    for metric in ("ctr", "cvr"):
        table = industry_lifts(cells, metric, alpha=alpha)
        if table.empty:
            continue
        per_industry.append(table)
        q = cochran_q(table)
        for row in q.to_dict("records"):
            tests.append({"metric": metric, "test": "cochran_q", "variant": row["variant"],
                          "statistic": row["cochran_q"], "df": row["df"], "p_value": row["p_value"],
                          "i2": row["i2"], "tau2": row["tau2"], "note": f"{row['k_industries']} industries"})
        if cells["industry"].nunique() >= 2:
            try:
                wald = interaction_wald(fit_interaction_glm(cells, metric))
                tests.append({"metric": metric, "test": "glm_interaction_wald", "variant": "all",
                              "statistic": wald["wald_chi2"], "df": wald["df"], "p_value": wald["p_value"],
                              "i2": np.nan, "tau2": np.nan,
                              "note": "cluster-robust by video" + ("" if wald["rank_ok"] else
                                                                  "; fewer videos than restrictions: no joint test")})
            except (ValueError, np.linalg.LinAlgError) as exc:
                tests.append({"metric": metric, "test": "glm_interaction_wald", "variant": "all",
                              "statistic": np.nan, "df": 0, "p_value": np.nan, "i2": np.nan, "tau2": np.nan,
                              "note": f"GLM failed: {exc}"})
    lifts = pd.concat(per_industry, ignore_index=True) if per_industry else pd.DataFrame()
    return lifts, pd.DataFrame(tests)


__all__ = ["GLM_FORMULAS", "fit_interaction_glm", "interaction_wald", "industry_lifts", "cochran_q",
           "heterogeneity_tables", "METRICS"]
