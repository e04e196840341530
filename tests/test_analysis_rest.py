"""Issue 22, the rest: dose windows from the registry, the observational model's small-sample
rule, and the plan's MDE with an expected ICC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from align_core.experiments.config import ExperimentConfig
from analysis.observational import observational_table
from analysis.preregistration import DEFAULT_ICC, analysis_plan
from analysis.small_sample import METHOD_CR2
from analysis.timing import select_doses


def test_full_window_arms_get_their_dose() -> None:
    """The registry says 'full' for full_boost and placebo; the manipulation check records 'all'."""
    deltas = pd.DataFrame(
        [
            (v, arm, window, 0.1 * i)
            for v in ("a", "b")
            for arm in ("full_boost", "placebo", "early_boost")
            for i, window in enumerate(("early", "middle", "late", "all"))
        ],
        columns=["video_id", "variant", "window", "achieved_delta"],
    )
    chosen = select_doses(deltas).set_index(["video_id", "variant"])["achieved_delta"]
    assert chosen.loc[("a", "full_boost")] == pytest.approx(0.3)  # the 'all' row
    assert chosen.loc[("b", "placebo")] == pytest.approx(0.3)
    assert chosen.loc[("a", "early_boost")] == pytest.approx(0.0)


def test_observational_model_follows_the_small_sample_rule() -> None:
    rng = np.random.default_rng(2)
    n_videos, per = 8, 5
    video_effect = np.repeat(rng.normal(0, 0.01, n_videos), per)
    scenes = pd.DataFrame(
        {
            "video_id": np.repeat([f"v{i}" for i in range(n_videos)], per),
            "attention_proportion": rng.uniform(0, 1, n_videos * per),
            "contrast": rng.normal(0, 1, n_videos * per),
            "brightness": rng.normal(0, 1, n_videos * per),
            "industry": "x",
        }
    )
    scenes["ctr_mean"] = 0.02 + video_effect + rng.normal(0, 0.001, len(scenes))
    scenes["cvr_mean"] = 0.05 + rng.normal(0, 0.01, len(scenes))
    out = observational_table(scenes)
    assert (out["se_method"] == METHOD_CR2).all()
    assert (out["df"] < n_videos).all() and (out["df"] > 0).all()


def test_plan_mde_uses_an_expected_icc() -> None:
    config = ExperimentConfig("exp-icc", planned_impressions_per_arm=252_000, planned_videos=9)
    default = analysis_plan(config)["mde"]
    assert default["icc"] == pytest.approx(DEFAULT_ICC) and "default" in default["icc_source"]
    assert default["design_effect"] == pytest.approx(1 + (28_000 - 1) * DEFAULT_ICC)
    observed = analysis_plan(config, (0.001, "scenes"))["mde"]
    assert observed["icc_source"] == "scenes" and observed["mde_relative"] > default["mde_relative"]
    iid = analysis_plan(config, (1e-12, "scenes"))["mde"]
    assert iid["mde_relative"] < default["mde_relative"] / 2  # clustering at the default ICC doubles the MDE or more


def test_planted_check_compares_only_rows_with_an_interval() -> None:
    """A contrast one video supports has no CI: it is not a miss of the planted-effects check."""
    from align_demo.assets import planted_vs_estimated

    lift = pd.DataFrame(
        {
            "metric": ["ctr", "ctr"],
            "variant": ["early_boost", "placebo"],
            "rel_lift": [0.03, 0.01],
            "rel_ci_low": [np.nan, -0.2],
            "rel_ci_high": [np.nan, 0.3],
            "log_ratio": [np.log(1.03), np.log(1.01)],
            "log_se": [np.nan, 0.12],
            "df": [np.nan, 8.0],
        }
    )
    out = planted_vs_estimated(lift, {"ctr": {"early_boost": 0.12, "placebo": 0.0}})
    assert list(out["variant"]) == ["placebo"] and out["covered"].all()


def _simulated_lifts(rng: np.random.Generator, planted: np.ndarray, se: float, df: float) -> pd.DataFrame:
    """Lift rows whose log ratios are the planted ones plus a t-distributed estimation error."""
    from scipy import stats

    log_ratio = np.log1p(planted) + se * rng.standard_t(df, size=planted.size)
    crit = stats.t.ppf(0.975, df)
    return pd.DataFrame(
        {
            "metric": "ctr",
            "variant": [f"arm{i}" for i in range(planted.size)],
            "rel_lift": np.expm1(log_ratio),
            "rel_ci_low": np.expm1(log_ratio - crit * se),
            "rel_ci_high": np.expm1(log_ratio + crit * se),
            "log_ratio": log_ratio,
            "log_se": se,
            "df": df,
        }
    )


def test_planted_check_is_family_wise_a_correct_estimator_passes_and_a_biased_one_fails() -> None:
    """19 effects: all-covered by separate 95 % CIs happens ~38 % of the time even for a correct
    estimator; the check's simultaneous intervals pass ~95 % of the time, and still catch a bias."""
    from align_demo.assets import planted_vs_estimated

    rng = np.random.default_rng(20261204)
    planted = np.linspace(-0.1, 0.2, 19)
    truth = {"ctr": {f"arm{i}": float(p) for i, p in enumerate(planted)}}
    passed = separately = 0
    reps = 400
    for _ in range(reps):
        out = planted_vs_estimated(_simulated_lifts(rng, planted, se=0.05, df=6.0), truth)
        passed += bool(out["covered"].all())
        separately += bool(((out["ci_low"] <= out["planted"]) & (out["planted"] <= out["ci_high"])).all())
    assert passed / reps >= 0.92, passed / reps
    assert separately / reps < 0.55, separately / reps
    biased = _simulated_lifts(rng, planted, se=0.05, df=6.0)
    biased.loc[3, "log_ratio"] += 0.6  # one arm's estimate 12 SEs off its planted value
    biased.loc[3, "rel_lift"] = np.expm1(biased.loc[3, "log_ratio"])
    assert not planted_vs_estimated(biased, truth)["covered"].all()


def test_subgroup_ses_are_never_below_the_iid_se() -> None:
    """A 3-video subgroup's CR2 variance can by chance be a quarter of the binomial one: the
    subgroup row is raised to the iid SE (wider CI, larger p, said in se_method); others untouched."""
    from analysis.heterogeneity import conventional_floor

    table = pd.DataFrame(
        {
            "variant": ["placebo", "early_boost"],
            "abs_lift": [0.001, 0.004],
            "abs_se": [0.0005, 0.001],
            "log_ratio": [np.log(1.05), np.log(1.2)],
            "log_se": [0.02, 0.05],
            "rel_se": [0.021, 0.06],
            "df": [2.0, 2.0],
            "design_effect": [0.25, 1.6],
            "se_method": ["CR2", "CR2"],
        }
    )
    table["t_stat"] = table["log_ratio"] / table["log_se"]
    out = conventional_floor(table)
    assert out.loc[0, "log_se"] == pytest.approx(0.04) and out.loc[0, "abs_se"] == pytest.approx(0.001)
    assert out.loc[0, "rel_ci_low"] < np.exp(np.log(1.05) - 4.3 * 0.02) - 1
    assert "raised to the iid SE" in out.loc[0, "se_method"]
    assert out.loc[1, "log_se"] == 0.05 and out.loc[1, "se_method"] == "CR2"
