"""The demo's truth file states what the simulator actually planted in the videos that ran.

A fresh full demo missed its planted-effects check on the placebo's CTR (+5.6 % where 0 was
planted) and on two arms' watch time (+10-12 % where 3-4 % was planted). The estimates were
right: the simulator gave every arm, the placebo included, its own per-video deviation of the
lift (``lift_sd``), and the truth file reported the mean over hypothetical videos instead of
the effect planted in these 3-9 videos. These tests pin both fixes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from align_core.stimuli.plans import DEFAULT_VARIANTS
from align_demo.ab_simulator import (
    SimulationEffects,
    matched_planted_truth,
    planted_in_videos,
    simulate_ab,
    simulate_uploaded_ab,
)
from align_demo.assets import demo_experiment, demo_truth
from analysis.lift import lift_table

VIDEOS = pd.DataFrame(
    {
        "video_id": [f"v{i}" for i in range(6)],
        "industry": ["Beauty", "Beauty", "Home", "Home", "Food", "unknown"],
    }
)
SUMS = ["impressions", "clicks", "conversions", "watch_time_s_sum", "watch_time_s_sumsq"]


def _manifest() -> pd.DataFrame:
    """Eligibility as in the demo: baseline and placebo everywhere, edited arms in some videos."""
    names = [s.name for s in DEFAULT_VARIANTS]
    skip = {("v0", "late_boost"), ("v1", "late_boost"), ("v2", "early_boost"), ("v5", "full_boost")}
    rows = [(v, a) for v in VIDEOS["video_id"] for a in names if (v, a) not in skip]
    return pd.DataFrame(rows, columns=["video_id", "variant"]).assign(experiment_id="demo-exp-1")


def test_placebo_and_control_get_no_effect_in_any_video() -> None:
    sim = simulate_ab(VIDEOS, SimulationEffects(lift_sd=0.2), seed=3, days=1, segments=("all",))
    rates = sim.planted.set_index(["variant", "video_id"])[["ctr", "cvr", "watch_s"]]
    # a placebo planted at zero is zero in every video, not only on average over videos
    np.testing.assert_allclose(rates.loc["placebo"].to_numpy(), rates.loc["baseline"].to_numpy(), rtol=1e-12)
    # an edited arm's lift still varies from video to video around its planted mean
    assert not np.allclose(rates.loc["early_boost"].to_numpy(), rates.loc["baseline"].to_numpy() * [1.12, 1.05, 1.04])


def test_truth_is_the_lift_planted_in_the_matched_videos() -> None:
    """With traffic so large that sampling noise vanishes, the matched estimate equals the truth file."""
    effects = SimulationEffects(industry_modifier={"Beauty": 1.5}, lift_sd=0.1, ctr_dose_slope=0.5)
    doses = pd.DataFrame(
        [(v, a, 0.02 * i) for i, v in enumerate(VIDEOS["video_id"]) for a in ("early_boost", "placebo")],
        columns=["video_id", "variant", "achieved_delta"],
    )
    manifest = _manifest()
    experiment = demo_experiment(len(VIDEOS))
    sim = simulate_uploaded_ab(
        VIDEOS, manifest, effects, experiment.variants, seed=5, days=1, segments=("all",),
        impressions_per_arm=5_000_000, achieved_delta=doses,
    )  # fmt: skip
    truth = demo_truth(VIDEOS, manifest, effects, doses, sim.planted, experiment)
    cells = sim.rows.groupby(["video_id", "variant"], as_index=False)[SUMS].sum().merge(VIDEOS, on="video_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lift = lift_table(cells.assign(planned_share=1 / 7), metrics=("ctr", "cvr", "watch_time"))
    expected = matched_planted_truth(VIDEOS, manifest, effects, achieved_delta=doses, variants=experiment.variants)
    far = 0
    for row in lift.itertuples(index=False):
        # iid SE of the ratio: the sampling noise left at this traffic (no video-level noise remains)
        se = (1 + row.rel_lift) * np.sqrt(1 / row.variant_num + 1 / row.baseline_num)
        if row.metric == "watch_time":
            se = 6.0 / 8.0 * np.sqrt(1 / row.variant_den + 1 / row.baseline_den)
        assert abs(row.rel_lift - truth[row.metric][row.variant]) < 4 * se, (row.metric, row.variant, se)
        assert truth["expected_over_videos"][row.metric][row.variant] == expected[row.metric][row.variant]
        far += abs(expected[row.metric][row.variant] - row.rel_lift) > 6 * se
    # the old truth file (the expectation over videos) misses most contrasts by far more than their noise
    assert far >= 7, far
    assert truth["watch_time"]["placebo"] == pytest.approx(0.0, abs=1e-12)
    # the placebo's CTR moves only by its planted dose term, weighted by each video's baseline CTR
    base = sim.planted[sim.planted["variant"] == "baseline"].set_index("video_id")["ctr"]
    dose = np.exp(0.5 * doses[doses["variant"] == "placebo"].set_index("video_id")["achieved_delta"])
    assert truth["ctr"]["placebo"] == pytest.approx(float((base * dose).sum() / base.sum() - 1), rel=1e-9)


def test_planted_in_videos_uses_only_videos_where_both_arms_ran() -> None:
    planted = pd.DataFrame(
        {
            "video_id": ["a", "b", "a", "b"],
            "variant": ["baseline", "baseline", "x", "x"],
            "role": ["control", "control", "other", "other"],
            "ctr": [0.01, 0.03, 0.012, 0.06],
            "cvr": [0.1, 0.1, 0.1, 0.1],
            "watch_s": [5.0, 5.0, 6.0, 5.0],
            "impressions": [100.0, 100.0, 100.0, 100.0],
        }
    )
    ran = pd.DataFrame({"video_id": ["a", "b", "a"], "variant": ["baseline", "baseline", "x"]})
    truth = planted_in_videos(planted, ran)
    assert truth["ctr"]["x"] == pytest.approx(0.2)  # video a only: 0.012 / 0.01
    assert truth["watch_time"]["x"] == pytest.approx(0.2)
    assert planted_in_videos(planted)["ctr"]["x"] == pytest.approx(0.072 / 0.04 - 1)
