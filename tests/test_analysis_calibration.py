"""Calibration by simulation, the suite's smaller version of bench/bench_analysis_calibration.py:
the demo's design with arms missing in 0-70 % of videos (low-CTR videos first); intervals must
cover the planted lifts and null tests must hold their size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from align_demo.calibration import calibration_table, simulate_experiment

EXPERIMENTS = 120


@pytest.fixture(scope="module")
def table():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibration_table(range(1000, 1000 + EXPERIMENTS))


def test_eligibility_removes_arms_and_prefers_low_ctr_videos() -> None:
    missing, low_ctr_share = [], []
    for seed in range(30):
        cells = simulate_experiment(seed)
        per_arm = cells.groupby("variant")["video_id"].nunique()
        assert per_arm["baseline"] == per_arm["placebo"] == 9
        missing.append(1 - per_arm.drop(["baseline", "placebo"]) / 9)
        base = cells[cells["variant"] == "baseline"].set_index("video_id")
        ctr = base["clicks"] / base["impressions"]
        arms = cells.groupby("video_id")["variant"].nunique()
        low_ctr_share.append(float(np.corrcoef(ctr, arms.loc[ctr.index])[0, 1]))
    shares = np.concatenate([m.to_numpy() for m in missing])
    assert shares.min() >= 0 and shares.max() <= 0.7 + 1e-9 and 0.2 < shares.mean() < 0.5
    assert np.mean(low_ctr_share) > 0.2  # videos with more arms have the higher baseline CTR


def test_intervals_cover_the_planted_lifts(table) -> None:
    cov = table[table["kind"] == "coverage"]
    assert len(cov) == 18  # 6 arms x 3 metrics, each estimable in the simulations
    overall = float(np.average(cov["rate"], weights=cov["experiments"]))
    assert 0.93 <= overall <= 0.97, cov.to_string()
    # each arm x metric within 4 Monte-Carlo SEs of 95 % (18 cells: 3 SEs would fail by chance ~5 % of runs)
    tol = 4 * np.sqrt(0.95 * 0.05 / cov["experiments"])
    assert ((cov["rate"] - 0.95).abs() <= tol).all(), cov.to_string()


def test_null_tests_hold_their_size(table) -> None:
    size = table[table["kind"] == "size"].set_index("arm")
    assert {"SRM (within video)", "placebo per-industry lift", "placebo Cochran Q"} <= set(size.index)
    bound = 0.06 + 2 * np.sqrt(0.06 * 0.94 / size["experiments"])
    assert (size["rate"] <= bound).all(), size.to_string()
