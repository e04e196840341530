"""Repeated simulation: interval coverage with planted effects, and the null rejection rate.

Numbers this measured (200 replications, 40 videos, one day, 3000 impressions per video-arm):
see the assertions' messages (printed with ``pytest -s``); the bounds are the brief's
[0.88, 0.99] for nominal 95 % intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from align_demo.ab_simulator import SimulationEffects, planted_truth, simulate_ab_rows
from analysis.lift import lift_table

REPS = 200
VIDEOS = pd.DataFrame({"video_id": [f"v{i:02d}" for i in range(40)], "industry": "all"})


def _cells(effects: SimulationEffects, seed: int) -> pd.DataFrame:
    # one day and one segment: each export row already is a video x variant cell
    rows = simulate_ab_rows(VIDEOS, effects, seed=seed, days=1, segments=["all"])
    return rows.assign(industry="all")


def test_coverage_of_relative_lift_intervals() -> None:
    effects = SimulationEffects()
    truth = planted_truth(VIDEOS, effects)
    hits: dict[str, list[bool]] = {"ctr": [], "cvr": [], "watch_time": []}
    for rep in range(REPS):
        table = lift_table(_cells(effects, seed=rep))
        for metric in hits:
            part = table[table["metric"] == metric]
            true = part["variant"].map(truth[metric])
            hits[metric].extend(((part["rel_ci_low"] <= true) & (true <= part["rel_ci_high"])).tolist())
    coverage = {m: float(np.mean(h)) for m, h in hits.items()}
    print(f"coverage of 95% CIs over {REPS} reps x 6 variants: {coverage}")
    for metric, value in coverage.items():
        assert 0.88 <= value <= 0.99, f"{metric} coverage {value:.3f}"


def test_null_rejection_rate_with_and_without_clustering() -> None:
    null = SimulationEffects(ctr_lift={}, cvr_lift={}, watch_lift={}, lift_sd=0.12)
    per_test, family, iid = [], [], []
    for rep in range(REPS):
        table = lift_table(_cells(null, seed=50_000 + rep), metrics=("ctr",))
        per_test.extend((table["p_value"] < 0.05).tolist())
        # Holm rejects at least one hypothesis exactly when min(p) < alpha / m (its first step);
        # computed directly because statsmodels' multipletests runs gc.collect() on every call
        family.append(bool(table["p_value"].min() < 0.05 / len(table)))
        iid.extend((table["iid_p_value"] < 0.05).tolist())
    rates = {
        "cluster_per_test": float(np.mean(per_test)),
        "cluster_holm_familywise": float(np.mean(family)),
        "iid_per_test": float(np.mean(iid)),
    }
    print(f"null rejection rates at alpha 0.05 over {REPS} reps x 6 variants: {rates}")
    assert 0.025 <= rates["cluster_per_test"] <= 0.085
    assert 0.01 <= rates["cluster_holm_familywise"] <= 0.10
    # ignoring that impressions of one video are correlated over-rejects
    assert rates["iid_per_test"] > rates["cluster_per_test"] + 0.03
