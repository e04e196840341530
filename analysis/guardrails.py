"""Guardrails: sample-ratio mismatch, and power / minimum detectable effect for planning.

A sample-ratio mismatch (served impressions far from the planned split) means the platform's
delivery, not the variant, decided who saw what, and lifts are then not causal; it is tested
per experiment, within each video over the arms that ran there, with a chi-square
goodness-of-fit test at a strict threshold (0.001, as is
usual for SRM alarms because the test runs on every experiment).

Planning: impressions of one video are correlated, so n impressions of m videos carry the
information of n / deff independent ones, with ``deff = 1 + (m_bar - 1) * icc`` (Kish). The
calculator applies that design effect to statsmodels' two-sample power for proportions
(Cohen's h from ``proportion_effectsize``), or takes a measured design effect from a past
experiment (``analysis_lift.design_effect``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

__all__ = [
    "design_effect",
    "mde_relative",
    "planning_table",
    "required_impressions",
    "srm_test",
]

SRM_ALPHA = 0.001


def _within_cell_shares(part: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """Each served cell's expected share of its video's impressions (planned shares renormalised
    over the arms that ran in that video), and whether planned shares were recorded."""
    shares = part["planned_share"].to_numpy(dtype=float)
    planned = bool(np.isfinite(shares).all())
    if not planned:
        shares = np.ones(len(part))
    by_video = pd.Series(shares, index=part.index).groupby(part["video_id"]).transform("sum").to_numpy()
    return shares / by_video, planned


def _srm_row(experiment_id: object, part: pd.DataFrame, alpha: float) -> dict[str, object] | None:
    """One experiment's SRM test: served vs expected impressions within each video x arm cell that ran."""
    part = part[part["impressions"] > 0]
    if "video_id" not in part:
        part = part.assign(video_id="all")
    arms_per_video = part.groupby("video_id")["variant"].transform("nunique")
    if (arms_per_video <= 1).all():  # one creative per arm (no video in two arms): compare the arms' totals
        part = part.groupby("variant", as_index=False).agg(
            impressions=("impressions", "sum"), planned_share=("planned_share", "first")
        )
        part = part.assign(video_id="all arms")
    else:
        part = part[arms_per_video > 1]  # a video with one arm says nothing about the split
    if part.empty:
        return None
    shares, planned = _within_cell_shares(part)
    observed = part["impressions"].to_numpy(dtype=float)
    video_total = part.groupby("video_id")["impressions"].transform("sum").to_numpy(dtype=float)
    expected = shares * video_total
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    df = int((part.groupby("video_id")["variant"].nunique() - 1).sum())
    p = float(stats.chi2.sf(chi2, df))
    worst = int(np.argmax(np.abs(observed / expected - 1)))
    return {
        "experiment_id": experiment_id,
        "check": "sample_ratio_mismatch",
        "statistic": chi2,
        "df": df,
        "p_value": p,
        "flagged": bool(p < alpha),
        "threshold": alpha,
        "detail": (
            f"{'planned' if planned else 'assumed equal'} shares among the arms each video ran "
            f"({part['video_id'].nunique()} videos, {len(part)} cells); worst cell "
            f"{part['variant'].iat[worst]} in video {part['video_id'].iat[worst]}: served {observed[worst]:.0f} "
            f"vs expected {expected[worst]:.0f} ({observed[worst] / expected[worst] - 1:+.2%})"
        ),
    }


def srm_test(arms: pd.DataFrame, alpha: float = SRM_ALPHA) -> pd.DataFrame:
    """Chi-square test of served impressions against the planned split, one row per experiment.

    ``arms`` has experiment_id, variant, impressions, planned_share (NULL where no plan is
    recorded: equal shares are assumed and the row says so) and, normally, video_id: the test
    then compares each video's served impressions with the planned split *among the arms that
    ran in that video* (sum of per-video Pearson chi-squares, df = sum of arms - 1), so arms left
    out of some videos by eligibility never trigger it. Without video_id the arms' totals are
    compared (one cell per arm).
    """
    rows = [_srm_row(exp, part, alpha) for exp, part in arms.groupby("experiment_id")]
    return pd.DataFrame([r for r in rows if r is not None])


def design_effect(impressions_per_video: float, icc: float) -> float:
    """Kish design effect of cluster sampling: ``1 + (m - 1) * icc``."""
    return 1.0 + max(impressions_per_video - 1.0, 0.0) * icc


def mde_relative(
    base_rate: float, impressions_per_arm: float, deff: float = 1.0, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest relative lift in a rate detectable with the given impressions per arm.

    Solves for Cohen's h at the effective sample size ``impressions / deff`` and maps it back
    to a rate: ``p1 = sin(asin(sqrt(p0)) + h / 2)^2``.
    """
    n_eff = impressions_per_arm / deff
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=n_eff, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    p1 = math.sin(math.asin(math.sqrt(base_rate)) + h / 2) ** 2
    return p1 / base_rate - 1.0


def required_impressions(
    base_rate: float, relative_lift: float, deff: float = 1.0, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Impressions per arm needed to detect ``relative_lift`` (design effect included)."""
    h = abs(proportion_effectsize(base_rate * (1 + relative_lift), base_rate))
    n = NormalIndPower().solve_power(
        effect_size=h, nobs1=None, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return float(n * deff)


def planning_table(
    base_rate: float, impressions_per_arm: float, n_videos: int, icc: float, alpha: float = 0.05, power: float = 0.8
) -> pd.DataFrame:
    """MDE with and without the clustering design effect, for a report or a notebook."""
    m = impressions_per_arm / max(n_videos, 1)
    deff = design_effect(m, icc)
    return pd.DataFrame(
        [
            {
                "assumption": "independent impressions",
                "design_effect": 1.0,
                "mde_relative": mde_relative(base_rate, impressions_per_arm, 1.0, alpha, power),
            },
            {
                "assumption": f"clustered by video (icc={icc:g}, {m:.0f} impressions/video/arm)",
                "design_effect": deff,
                "mde_relative": mde_relative(base_rate, impressions_per_arm, deff, alpha, power),
            },
        ]
    )
