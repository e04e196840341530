"""Designs: paired by video vs randomised by user (unpaired), against deltatest's published test.

deltatest (Makiyama & Takayanagi, CRAN 0.1.0, github.com/hoxo-m/deltatest,
tests/testthat/test-deltatest.R, "'bias_correction' = FALSE"): data
``set.seed(314); generate_dummy_data(100)`` aggregated to clicks / pageviews per user; the
delta-method z-test (Deng, Knoblich & Lu 2018) gives Z = -1.24156594, p = 0.214396755, means
0.234960272 (control) and 0.188405797 (treatment), difference -0.046554475, SE 0.037496579,
95 % CI (-0.120046420, 0.026937469).

The inputs are R's pseudo-random draws, so this file re-creates them: R's Mersenne-Twister with
``set.seed`` scrambling, ``rpois`` for mu < 10 (table inversion: one uniform per draw),
``rbinom`` for n*p < 30 with size 1 (inversion) and ``runif`` (no draw when min == max), in the
order generate_dummy_data calls them. The emulation is checked by the published group means.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.lift import lift_table, ratio_influence
from analysis.small_sample import METHOD_CR2

_M32 = 0xFFFFFFFF


class _RMersenneTwister:
    """R's default RNG (``RNGkind("Mersenne-Twister", "Inversion", "Rejection")``)."""

    def __init__(self, seed: int) -> None:
        s = seed & _M32
        for _ in range(50):  # set.seed's initial scrambling
            s = (69069 * s + 1) & _M32
        table = []
        for _ in range(625):
            s = (69069 * s + 1) & _M32
            table.append(s)
        self.mt, self.mti = table[1:], 624  # dummy[0] (mti) is reset to N by FixupSeeds

    def _int32(self) -> int:
        mt = self.mt
        if self.mti >= 624:
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7FFFFFFF)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.mti = 0
        y = mt[self.mti]
        self.mti += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)

    def unif(self) -> float:
        v = self._int32() * 2.3283064365386963e-10
        return min(max(v, 1.1641532182693481e-10), 1 - 1.1641532182693481e-10)

    def rpois(self, mu: float) -> int:
        u, k, p = self.unif(), 0, math.exp(-mu)
        q = p
        while u > q:
            k += 1
            p *= mu / k
            q += p
        return k

    def rbinom1(self, prob: float) -> int:
        p = min(prob, 1 - prob)
        ix = 0 if self.unif() < 1 - p else 1
        return 1 - ix if prob > 0.5 else ix


def deltatest_dummy_users(n_user: int = 100, seed: int = 314) -> pd.DataFrame:
    """deltatest::generate_dummy_data(n_user) (Bernoulli model, xi = 0, random by user), per user."""
    rng = _RMersenneTwister(seed)
    sessions = [rng.rpois(3) + 1 for _ in range(n_user)]
    pageviews = [sum(rng.rpois(3) + 1 for _ in range(k)) for k in sessions]
    group = [rng.rbinom1(0.5) for _ in range(n_user)]
    mu = [0.5 * rng.unif() for _ in range(n_user)]  # runif(max = 0.5); runif(max = xi = 0) draws nothing
    clicks = [sum(rng.rbinom1(mu[i]) for _ in range(pageviews[i])) for i in range(n_user)]
    return pd.DataFrame(
        {
            "user_id": [f"u{i + 1:03d}" for i in range(n_user)],
            "group": group,
            "clicks": clicks,
            "impressions": pageviews,
        }
    )


@pytest.fixture(scope="module")
def users() -> pd.DataFrame:
    frame = deltatest_dummy_users()
    return frame.assign(
        variant=np.where(frame["group"] == 1, "early_boost", "baseline"),
        conversions=0,
        watch_time_s_sum=0.0,
        watch_time_s_sumsq=0.0,
        industry="all",
    )


def test_r_emulation_reproduces_published_means(users: pd.DataFrame) -> None:
    by = users.groupby("group")[["clicks", "impressions"]].sum()
    assert by.loc[0, "clicks"] / by.loc[0, "impressions"] == pytest.approx(0.234960272, abs=5e-10)
    assert by.loc[1, "clicks"] / by.loc[1, "impressions"] == pytest.approx(0.188405797, abs=5e-10)


def test_unpaired_design_reproduces_deltatest(users: pd.DataFrame) -> None:
    row = lift_table(users, metrics=("ctr",), design="unpaired", cluster="user_id").iloc[0]
    assert row["abs_lift"] == pytest.approx(-0.046554475, abs=5e-10)
    assert row["abs_se"] == pytest.approx(0.037496579, abs=5e-10)
    z = row["abs_lift"] / row["abs_se"]
    assert z == pytest.approx(-1.24156594, abs=5e-8)
    assert 2 * stats.norm.sf(abs(z)) == pytest.approx(0.214396755, abs=5e-9)
    crit = stats.norm.ppf(0.975)
    assert row["abs_lift"] - crit * row["abs_se"] == pytest.approx(-0.120046420, abs=5e-9)
    assert row["abs_lift"] + crit * row["abs_se"] == pytest.approx(0.026937469, abs=5e-9)
    assert row["df"] == 98 and "per arm" in row["se_method"] and row["design"] == "unpaired"


def test_one_pooled_factor_is_too_small_for_an_unpaired_test(users: pd.DataFrame) -> None:
    """What the platform did before: G/(G-1) over all 100 users gives Z -1.2485 (SE 0.56 % small)."""
    paired = ratio_influence(users, "clicks", "impressions", cluster="user_id", design="paired")
    unpaired = ratio_influence(users, "clicks", "impressions", cluster="user_id", design="unpaired")
    w = {"early_boost": 1.0, "baseline": -1.0}
    diff = paired.rates["early_boost"] - paired.rates["baseline"]
    assert round(diff / math.sqrt(paired.variance(w)), 4) == -1.2485
    assert math.sqrt(paired.variance(w)) / math.sqrt(unpaired.variance(w)) == pytest.approx(1 - 0.0056, abs=5e-4)


def test_unpaired_design_rejects_clusters_in_two_arms(users: pd.DataFrame) -> None:
    both = pd.concat([users, users.head(2).assign(variant="early_boost" if users["group"].iat[0] == 0 else "baseline")])
    with pytest.raises(ValueError, match="u001.*more than one arm"):
        lift_table(both, metrics=("ctr",), design="unpaired", cluster="user_id")


def test_small_samples_use_cr2_and_say_so(users: pd.DataFrame) -> None:
    few = users.head(20)
    row = lift_table(few, metrics=("ctr",), design="unpaired", cluster="user_id").iloc[0]
    assert row["se_method"].startswith(METHOD_CR2) and 1 < row["df"] < 19
    many = lift_table(users, metrics=("ctr",), design="unpaired", cluster="user_id", small_sample=True).iloc[0]
    # with 100 users CR2 and the per-arm CR1 factor nearly agree (CR2 adjusts each user by its leverage)
    assert many["abs_se"] == pytest.approx(0.037496579, rel=0.02)


def test_unpaired_arm_with_one_cluster_is_not_estimable(users: pd.DataFrame) -> None:
    treated = users[users["variant"] == "early_boost"].head(1)
    one = pd.concat([users[users["variant"] == "baseline"].head(10), treated])
    row = lift_table(one, metrics=("ctr",), design="unpaired", cluster="user_id").iloc[0]
    assert np.isnan(row["p_value"]) and "early_boost has 1 cluster" in row["note"]
