"""The perceptual budget's measures: CIEDE2000 against Sharma et al.'s published pairs, SSIM basics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from align_core.measurement.perceptual_budget import BudgetMeasure, PerceptualBudget, ciede2000, measure, ssim_map

# Sharma, Wu, Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1 (pairs 1-3, 7, 8, 13-15, 17,
# 19, 21, 22, 24-26, 29, 34): (L1, a1, b1), (L2, a2, b2), dE00.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, -1.0, 2.0), (50.0, 0.0, 0.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0010), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, -0.001, 2.49), (50.0, 0.0011, -2.49), 4.7461),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((50.0, 2.5, 0.0), (50.0, 3.2972, 0.0), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_reproduces_sharmas_test_pairs() -> None:
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    expected = np.array([p[2] for p in SHARMA])
    np.testing.assert_allclose(ciede2000(lab1, lab2), expected, atol=1e-4)
    np.testing.assert_allclose(ciede2000(lab2, lab1), expected, atol=1e-4)  # symmetric


def textured(seed: int = 0, shape: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3)).astype(np.uint8), (0, 0), 1.0)


def test_identical_frames_are_free_and_changes_cost() -> None:
    frame = textured()
    same = measure(frame, frame)
    assert same.ssim == pytest.approx(1.0) and same.delta_e == pytest.approx(0.0)
    blurred = cv2.GaussianBlur(frame, (0, 0), 2.0)
    shifted = np.clip(frame.astype(int) + [25, 0, -25], 0, 255).astype(np.uint8)
    assert measure(frame, blurred).ssim < 0.9  # blur destroys structure: SSIM sees it
    colour = measure(frame, shifted)
    assert colour.ssim > 0.9 and colour.delta_e > 6  # a colour cast keeps structure: CIEDE2000 sees it
    assert not colour.within(PerceptualBudget()) and "CIEDE2000" in colour.reason(PerceptualBudget())


def test_only_pixels_outside_product_and_protect_count() -> None:
    frame = textured()
    edited = frame.copy()
    product = np.zeros(frame.shape[:2], bool)
    product[10:30, 10:30] = True
    protect = np.zeros(frame.shape[:2], bool)
    protect[40:60, :] = True
    edited[product] = 0
    edited[protect] = 255
    inside_only = measure(frame, edited, product, protect)
    assert inside_only.delta_e == 0.0 and inside_only.pixels == int((~(product | protect)).sum())
    assert measure(frame, edited, product).delta_e > 0  # the protected edit counts when not excluded
    all_product = measure(frame, edited, np.ones(frame.shape[:2], bool))
    assert (all_product.ssim, all_product.delta_e, all_product.pixels) == (1.0, 0.0, 0)
    assert all_product.product_ssim < 0.9  # nothing outside it to measure, but the product's own edit is bounded
    assert measure(frame, frame, np.ones(frame.shape[:2], bool)) == BudgetMeasure(1.0, 0.0, 0)
    with pytest.raises(ValueError, match="product mask"):
        measure(frame, edited, product[:5])


def test_ssim_map_is_one_for_equal_and_bounded() -> None:
    frame = textured(1)
    np.testing.assert_allclose(ssim_map(frame, frame), 1.0, atol=1e-9)
    values = ssim_map(frame, textured(2))
    assert values.max() <= 1.0 + 1e-9 and values.mean() < 0.5
    with pytest.raises(ValueError):
        PerceptualBudget(min_ssim=1.5)


def test_large_frames_are_measured_at_wangs_downsampled_scale() -> None:
    from align_core.measurement.perceptual_budget import downsample_factor

    assert downsample_factor((512, 288, 3)) == 1 and downsample_factor((1920, 1080, 3)) == 4
    small = textured(3, (480, 270))
    edited = cv2.GaussianBlur(small, (0, 0), 1.2)
    big, big_edited = (cv2.resize(x, (1080, 1920), interpolation=cv2.INTER_NEAREST) for x in (small, edited))
    at_small, at_big = measure(small, edited), measure(big, big_edited)
    assert at_big.pixels == at_small.pixels  # a real-size frame, factor 4: the same 480 x 270 grid
    assert at_big.ssim == pytest.approx(at_small.ssim, abs=1e-6) and at_big.delta_e == pytest.approx(
        at_small.delta_e, rel=1e-3
    )
    product = np.zeros(big.shape[:2], bool)
    product[0:3, 0:3] = True  # touches one 4x4 block: that block is excluded
    assert measure(big, big_edited, product).pixels == at_small.pixels - 1


def test_a_budget_reference_measures_exactly_what_measure_does() -> None:
    from align_core.measurement.perceptual_budget import BudgetReference

    for shape in ((96, 64), (800, 450)):  # factor 1 and factor 2
        frame = textured(4, shape)
        product = np.zeros(frame.shape[:2], bool)
        product[10:40, 5:30] = True
        protect = np.zeros_like(product)
        protect[-20:, :] = True
        reference = BudgetReference(frame, product, protect)
        for seed in (5, 6):
            edited = np.clip(frame.astype(int) + textured(seed, shape) // 16 - 8, 0, 255).astype(np.uint8)
            assert reference.measure(edited) == measure(frame, edited, product, protect)
        with pytest.raises(ValueError, match="differ"):
            reference.measure(frame[:10])
    assert BudgetReference(frame, np.ones(frame.shape[:2], bool)).measure(frame) == BudgetMeasure(1.0, 0.0, 0)
