"""Calibration of the analysis by simulation: the demo's design with realistic eligibility.

Each simulated experiment has the demo's layout (9 videos in 3 industries, the registry's 7
arms, the demo's traffic per video x arm) and planted effects from the registry
(:func:`align_demo.ab_simulator.registry_lifts`; no industry modifier, so every subgroup's true
lift is the planted one and the placebo's is exactly zero everywhere). Eligibility then removes
each edited arm from 0-70 % of the videos, preferring the videos with the lowest baseline CTR
(as unreachable edits did in the demo), so the arms' video sets differ and are correlated with
the outcome. Over many experiments the report's intervals must cover the planted lifts ~95 %
of the time and the null tests (placebo heterogeneity, per-industry placebo lifts, SRM) must
reject at their nominal rate. ``bench/bench_analysis_calibration.py`` prints the table;
``tests/test_analysis_calibration.py`` runs a smaller version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from align_core.stimuli.plans import DEFAULT_VARIANTS
from align_demo.ab_simulator import SimulationEffects, registry_lifts, simulate_ab_rows
from analysis.guardrails import srm_test
from analysis.heterogeneity import cochran_q, industry_lifts
from analysis.lift import lift_table
from analysis.meta import pool_industries
from analysis.timing import video_variant_log_lifts

__all__ = [
    "CalibrationDesign",
    "calibration_table",
    "simulate_experiment",
]

SUMS = ["impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq"]
METRICS = ("ctr", "cvr", "watch_time")
NULL_ALPHA = 0.05


@dataclass(frozen=True)
class CalibrationDesign:
    """The simulated design: the demo's by default."""

    n_videos: int = 9
    industries: tuple[str, ...] = ("beauty", "food", "home")
    impressions_per_video_arm: int = 28_000  # the demo: 4,000 a day for 7 days
    max_missing: float = 0.7  # each edited arm is missing from U(0, max_missing) of the videos
    always_run: tuple[str, ...] = ("baseline", "placebo")  # never judged ineligible


def _videos(design: CalibrationDesign) -> pd.DataFrame:
    k = len(design.industries)
    return pd.DataFrame(
        {
            "video_id": [f"72280233523969{i:05d}" for i in range(design.n_videos)],
            "industry": [design.industries[i % k] for i in range(design.n_videos)],
        }
    )


def _drop_ineligible(cells: pd.DataFrame, rng: np.random.Generator, design: CalibrationDesign) -> pd.DataFrame:
    """Remove each edited arm from a random share of videos, the low-CTR videos first (on average)."""
    base = cells[cells["variant"] == "baseline"].set_index("video_id")
    ctr = (base["clicks"] / base["impressions"]).to_numpy()
    score = (ctr - ctr.mean()) / (ctr.std() or 1.0)
    weights = np.exp(-1.5 * score)
    vids = base.index.to_numpy()
    keep = np.ones(len(cells), dtype=bool)
    for arm in sorted(set(cells["variant"]) - set(design.always_run)):
        n_missing = int(round(rng.uniform(0.0, design.max_missing) * len(vids)))
        if n_missing == 0:
            continue
        gone = rng.choice(vids, size=n_missing, replace=False, p=weights / weights.sum())
        keep &= ~((cells["variant"] == arm) & cells["video_id"].isin(gone)).to_numpy()
    return cells[keep]


def simulate_experiment(seed: int, design: CalibrationDesign = CalibrationDesign()) -> pd.DataFrame:
    """One experiment's cells (video x arm sums with industry and planned_share) after eligibility."""
    rng = np.random.default_rng(seed)
    videos = _videos(design)
    rows = simulate_ab_rows(
        videos,
        SimulationEffects(),
        seed=int(rng.integers(2**31)),
        days=1,
        segments=("all",),
        impressions_per_arm=design.impressions_per_video_arm,
    )
    cells = rows.groupby(["video_id", "variant"], as_index=False).agg(
        **{c: (c, "sum") for c in SUMS}, planned_share=("planned_share", "first")
    )
    cells = cells.merge(videos, on="video_id")
    return _drop_ineligible(cells, rng, design)


def _coverage_rows(cells: pd.DataFrame, truth: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    """Per arm x metric: estimable?, covered?, matched videos."""
    lift = lift_table(cells, metrics=METRICS)
    out = []
    for row in lift.itertuples(index=False):
        ok = bool(np.isfinite(row.rel_ci_low) and np.isfinite(row.rel_ci_high))
        planted = truth[row.metric][row.variant]
        covered = ok and row.rel_ci_low <= planted <= row.rel_ci_high
        out.append(
            {
                "kind": "coverage",
                "metric": row.metric,
                "arm": row.variant,
                "estimable": ok,
                "hit": covered,
                "n_videos": row.n_videos,
            }
        )
    return out


def _null_rows(cells: pd.DataFrame) -> list[dict[str, object]]:
    """Rejections at 5 % of tests whose null is true: SRM, placebo heterogeneity and subgroup lifts."""
    out: list[dict[str, object]] = []
    srm = srm_test(cells.assign(experiment_id="sim"))
    out.append({"kind": "size", "metric": "impressions", "arm": "SRM (within video)", "estimable": True})
    out[-1]["hit"] = bool(srm["p_value"].iat[0] < NULL_ALPHA)
    ind = industry_lifts(cells, "ctr")
    placebo = ind[ind["variant"] == "placebo"] if not ind.empty else ind
    for p in placebo.get("p_value", pd.Series(dtype=float)):
        ok = bool(np.isfinite(p))
        out.append({"kind": "size", "metric": "ctr", "arm": "placebo per-industry lift", "estimable": ok})
        out[-1]["hit"] = ok and p < NULL_ALPHA
    q = cochran_q(ind) if not ind.empty else pd.DataFrame()
    q = q[q["variant"] == "placebo"] if not q.empty else q
    out.append({"kind": "size", "metric": "ctr", "arm": "placebo Cochran Q", "estimable": not q.empty})
    out[-1]["hit"] = bool(not q.empty and q["p_value"].iat[0] < NULL_ALPHA)
    video = video_variant_log_lifts(cells, "ctr").assign(metric="ctr")
    pooled = pool_industries(ind, video_lifts=video) if not ind.empty else pd.DataFrame()
    rec = (
        pooled[(pooled["variant"] == "placebo") & pooled["recommended"].eq(True)] if "recommended" in pooled else pooled
    )
    ok = not rec.empty and bool(np.isfinite(rec["p_value"].iat[0]))
    out.append({"kind": "size", "metric": "ctr", "arm": "placebo pooled (recommended row)", "estimable": ok})
    out[-1]["hit"] = ok and rec["p_value"].iat[0] < NULL_ALPHA
    return out


def _truth() -> dict[str, dict[str, float]]:
    return {m: registry_lifts(DEFAULT_VARIANTS, m) for m in METRICS}


def calibration_table(seeds: Iterable[int], design: CalibrationDesign = CalibrationDesign()) -> pd.DataFrame:
    """Coverage of every reported lift and size of the null tests over the simulated experiments.

    Columns: kind (coverage / size), metric, arm, experiments (where estimable), rate (coverage
    of the planted lift, or rejection rate at 5 %), mc_se (its Monte-Carlo SE), mean_videos
    (matched videos behind the contrast), planted.
    """
    truth = _truth()
    records: list[dict[str, object]] = []
    for seed in seeds:
        cells = simulate_experiment(seed, design)
        records += _coverage_rows(cells, truth)
        records += _null_rows(cells)
    frame = pd.DataFrame(records)
    frame = frame[frame["estimable"]]
    table = frame.groupby(["kind", "metric", "arm"], sort=False).agg(
        experiments=("hit", "size"), rate=("hit", "mean"), mean_videos=("n_videos", "mean")
    )
    table["mc_se"] = np.sqrt(table["rate"] * (1 - table["rate"]) / table["experiments"])
    table = table.reset_index()
    table["planted"] = [
        truth[m][a] if k == "coverage" else np.nan
        for k, m, a in zip(table["kind"], table["metric"], table["arm"], strict=False)
    ]
    return table
