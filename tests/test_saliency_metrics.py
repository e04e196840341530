"""Saliency metrics on cases whose values can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from align_core.measurement.saliency_metrics import (
    auc_judd,
    blur_fixations,
    cc,
    centre_bias_map,
    fixation_map_from_points,
    kld,
    nss,
    sim,
)


def _one_hot(shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float64)
    out[row, col] = 1.0
    return out


def test_nss_of_map_equal_to_single_fixation_is_sqrt_n_minus_1() -> None:
    # Map = one-hot at the fixation: mean 1/N, population std sqrt(N-1)/N, so NSS = sqrt(N-1).
    shape = (8, 10)
    fixation = _one_hot(shape, 3, 4)
    assert nss(fixation, fixation) == pytest.approx(math.sqrt(80 - 1))


def test_nss_is_zero_for_constant_map_and_negative_for_anti_map() -> None:
    fixation = _one_hot((5, 5), 2, 2)
    assert nss(np.ones((5, 5)), fixation) == 0.0
    assert nss(1.0 - fixation, fixation) == pytest.approx(-math.sqrt(24))


def test_cc_identical_and_negated() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert cc(a, a) == pytest.approx(1.0)
    assert cc(a, 3.0 * a + 2.0) == pytest.approx(1.0)
    assert cc(a, -a) == pytest.approx(-1.0)


def test_kld_identical_is_zero_and_known_value() -> None:
    a = np.array([[1.0, 3.0]])
    assert kld(a, a) == pytest.approx(0.0, abs=1e-12)
    # P = [0.5, 0.5], Q = [0.25, 0.75]: KL(Q||P) = .25 ln(.5) + .75 ln(1.5)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kld(np.array([[1.0, 1.0]]), a) == pytest.approx(expected, rel=1e-9)


def test_sim_identical_is_one_and_disjoint_is_zero() -> None:
    a = np.array([[0.0, 1.0, 2.0, 3.0]])
    assert sim(a, a) == pytest.approx(1.0)
    assert sim(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(0.0)
    # After min-max + sum-to-one: [0, 1/3, 2/3, 1]/2 vs [1, 2/3, 1/3, 0]/2 -> sum of min = 1/3.
    assert sim(a, a[:, ::-1]) == pytest.approx(1.0 / 3.0)


def test_auc_judd_perfect_chance_and_hand_case() -> None:
    fixation = np.zeros((6, 6), dtype=bool)
    fixation[1, 1] = fixation[4, 2] = True
    assert auc_judd(fixation.astype(float), fixation) == pytest.approx(1.0)
    assert auc_judd(np.ones((6, 6)), fixation) == pytest.approx(0.5)
    # One fixation on a 1x4 map ranked 2nd of 4: ROC (0,0) -> (1/3, 1) -> (1,1),
    # trapezoids 1/2 * 1/3 * 1 + 2/3 * 1 = 5/6.
    saliency = np.array([[0.9, 0.5, 0.1, 0.2]])
    assert auc_judd(saliency, np.array([[0, 1, 0, 0]])) == pytest.approx(5.0 / 6.0)


def test_centre_bias_map_peaks_in_centre_with_given_sigma() -> None:
    cb = centre_bias_map(101, 201, sigma_frac=0.3)
    assert cb.dtype == np.float32
    assert cb[50, 100] == pytest.approx(1.0)
    # 60 px right of the centre, with sigma = 0.3 * 201 = 60.3 px.
    assert float(cb[50, 160]) == pytest.approx(math.exp(-0.5 * (60 / 60.3) ** 2), rel=1e-6)
    assert float(cb[50 - 30, 100]) == pytest.approx(math.exp(-0.5 * (30 / 30.3) ** 2), rel=1e-6)


def test_blur_fixations_uses_three_percent_of_larger_side() -> None:
    fixation = np.zeros((100, 200), dtype=bool)
    fixation[50, 100] = True
    density = blur_fixations(fixation)
    assert density.max() == pytest.approx(1.0)
    sigma = 0.03 * 200
    assert float(density[50, 106]) == pytest.approx(math.exp(-0.5 * (6 / sigma) ** 2), rel=0.02)


def test_fixation_map_from_points_and_errors() -> None:
    fixation = fixation_map_from_points(np.array([[1.2, 0.6], [3.0, 2.0]]), 3, 4)
    assert fixation.sum() == 2 and fixation[1, 1] and fixation[2, 3]
    with pytest.raises(ValueError, match="outside"):
        fixation_map_from_points(np.array([[4.0, 0.0]]), 3, 4)
    with pytest.raises(ValueError, match="shape"):
        nss(np.zeros((3, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="no fixated pixel"):
        auc_judd(np.zeros((3, 3)), np.zeros((3, 3)))
