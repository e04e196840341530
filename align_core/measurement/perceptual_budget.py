"""The perceptual budget: how far an edited frame may drift from baseline outside product and protected regions.

A variant is a stimulus that may differ from baseline only in where attention goes, so the
editor's changes to the rest of the frame are bounded per frame by two standard full-reference
measures, both computed only over the pixels outside ``product OR protect``:

- SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) on luma with the paper's 11x11 Gaussian window
  (sigma 1.5), K1 0.01, K2 0.03, data range 1: the mean of the SSIM map over the region must be
  at least ``min_ssim`` (default 0.90): structure, contrast and detail are kept;
- CIEDE2000 (Sharma, Wu, Dalal 2005) between the CIELAB colours (sRGB, D65) of corresponding
  pixels: its mean over the region must be at most ``max_delta_e`` (default 6; about 2-3 is a
  just-noticeable difference side by side, 6 a clearly visible but gentle grade).

Both are vectorised numpy/OpenCV; :func:`ciede2000` reproduces Sharma et al.'s published test
pairs to 1e-4 (``tests/test_perceptual_budget.py``). Like Wang's reference ``ssim.m``, frames are
first averaged down by an integer factor ``max(1, round(min(H, W) / 256))`` (1 for the 288x512
demo, 4 for 1080x1920): SSIM's 11-pixel window then covers the same visual angle at any size, and a
real-size ad costs what a small one does. The same measure gives the placebo its
matched magnitude (mean CIEDE2000 outside the region equal to the matched boost's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from align_core.measurement.image_metrics import SsimReference

__all__ = [
    "DEFAULT_MAX_DELTA_E",
    "DEFAULT_MIN_SSIM",
    "BudgetMeasure",
    "BudgetReference",
    "PerceptualBudget",
    "ciede2000",
    "downsample_factor",
    "measure",
    "ssim_map",
]


# The budget's defaults, read by every setting that carries one (the editor's, the stage's, the check's).
DEFAULT_MIN_SSIM = 0.90  # per-frame mean SSIM vs baseline outside product and protected regions, at least
DEFAULT_MAX_DELTA_E = 6.0  # per-frame mean CIEDE2000 vs baseline outside product and protected regions, at most


@dataclass(frozen=True)
class PerceptualBudget:
    """Per-frame limits outside product and protected regions (recorded with every variant)."""

    min_ssim: float = DEFAULT_MIN_SSIM
    max_delta_e: float = DEFAULT_MAX_DELTA_E

    def __post_init__(self) -> None:
        if not 0.0 < self.min_ssim <= 1.0:
            raise ValueError(f"perceptual budget: min_ssim must be in (0, 1], got {self.min_ssim}")
        if self.max_delta_e <= 0:
            raise ValueError(f"perceptual budget: max_delta_e must be positive, got {self.max_delta_e}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class BudgetMeasure:
    """SSIM and mean CIEDE2000 of one frame against baseline over ``pixels`` outside the region."""

    ssim: float
    delta_e: float
    pixels: int

    def within(self, budget: PerceptualBudget, slack: float = 0.0) -> bool:
        """True when both limits hold; ``slack`` (>= 0) tightens them (a margin for codec noise)."""
        return self.ssim >= budget.min_ssim + slack * (1.0 - budget.min_ssim) and self.delta_e <= budget.max_delta_e * (
            1.0 - slack
        )

    def reason(self, budget: PerceptualBudget) -> str:
        parts = []
        if self.ssim < budget.min_ssim:
            parts.append(f"SSIM {self.ssim:.3f} < {budget.min_ssim:g}")
        if self.delta_e > budget.max_delta_e:
            parts.append(f"mean CIEDE2000 {self.delta_e:.2f} > {budget.max_delta_e:g}")
        return "; ".join(parts) if parts else f"within budget (SSIM {self.ssim:.3f}, mean CIEDE2000 {self.delta_e:.2f})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_float_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"perceptual budget: expected an RGB (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an sRGB image (uint8, or float in [0, 1]): L in [0, 100]."""
    return cv2.cvtColor(_as_float_rgb(image), cv2.COLOR_RGB2LAB)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference of corresponding Lab values (``(..., 3)`` arrays), vectorised.

    Follows Sharma, Wu and Dalal (2005) exactly, including the hue-angle conventions for
    achromatic pairs (C'1 C'2 = 0) that the published test data exercise. Computed in float64,
    or in float32 when both inputs are float32 (frames: twice as fast, errors far below 0.01).
    """
    dtype = np.float32 if np.asarray(lab1).dtype == np.float32 and np.asarray(lab2).dtype == np.float32 else np.float64
    lab1 = np.asarray(lab1, dtype=dtype)
    lab2 = np.asarray(lab2, dtype=dtype)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c1 = np.hypot(a1, b1)
    c2 = np.hypot(a2, b2)
    c_bar7 = ((c1 + c2) / 2.0) ** 7
    g = 0.5 * (1.0 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p = (1.0 + g) * a1
    a2p = (1.0 + g) * a2
    c1p = np.hypot(a1p, b1)
    c2p = np.hypot(a2p, b2)
    h1p = _hue_degrees(b1, a1p)
    h2p = _hue_degrees(b2, a2p)
    chroma_product = c1p * c2p
    dl = l2 - l1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chroma_product == 0, 0.0, dh)
    d_big_h = 2.0 * np.sqrt(chroma_product) * np.sin(np.radians(dh / 2.0))
    l_bar = (l1 + l2) / 2.0
    c_bar_p = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(
        chroma_product == 0,
        h_sum,
        np.where(
            np.abs(h1p - h2p) <= 180.0,
            h_sum / 2.0,
            np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
        ),
    )
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c_bar_p7 = c_bar_p**7
    r_c = 2.0 * np.sqrt(c_bar_p7 / (c_bar_p7 + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_bar_p
    s_h = 1.0 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    term_l = dl / (k_l * s_l)
    term_c = dc / (k_c * s_c)
    term_h = d_big_h / (k_h * s_h)
    return np.sqrt(term_l**2 + term_c**2 + term_h**2 + r_t * term_c * term_h)


def _hue_degrees(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``degrees(arctan2(b, a)) % 360``: the same values (arctan2 lies in [-180, 180], so the modulo only
    adds 360 to negative angles) without numpy's floor-modulo, which took 40 % of CIEDE2000's time."""
    hue = np.degrees(np.arctan2(b, a))
    np.add(hue, 360.0, out=hue, where=hue < 0)
    return hue


def ssim_map(baseline: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of the BT.601 luma of two frames (Gaussian window, sigma 1.5, 11x11) on the budget's
    [0, 1] scale: :func:`align_core.measurement.image_metrics.ssim_map` on OpenCV's float32 grey."""
    return _budget_ssim(baseline).map(edited)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(_as_float_rgb(image), cv2.COLOR_RGB2GRAY).astype(np.float64)


def _budget_ssim(baseline: np.ndarray) -> SsimReference:
    """The budget's SSIM against ``baseline``: grey from OpenCV in float32 on [0, 1], data range 1."""
    return SsimReference(baseline, data_range=1.0, luma=_gray)


def outside_region(product: np.ndarray | None, protect: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Pixels the budget covers: not product and not protected."""
    excluded = np.zeros(shape, dtype=bool)
    for part, name in ((product, "product mask"), (protect, "protect mask")):
        if part is None:
            continue
        part = np.asarray(part, dtype=bool)
        if part.shape != shape:
            raise ValueError(f"perceptual budget: {name} {part.shape} does not match the frame {shape}")
        excluded |= part
    return ~excluded


def downsample_factor(shape: tuple[int, ...]) -> int:
    """Wang et al.'s SSIM downsampling factor for a frame of ``shape``: ``max(1, round(min(H, W) / 256))``."""
    return max(1, int(round(min(shape[0], shape[1]) / 256)))


def measure(
    baseline: np.ndarray, edited: np.ndarray, product: np.ndarray | None = None, protect: np.ndarray | None = None
) -> BudgetMeasure:
    """SSIM and mean CIEDE2000 of ``edited`` against ``baseline`` outside ``product OR protect``.

    ``pixels`` counts the measured pixels after the :func:`downsample_factor` averaging.

    A frame whose every pixel is product or protected has nothing to measure: SSIM 1, CIEDE2000 0.
    """
    baseline = np.asarray(baseline)
    edited = np.asarray(edited)
    if baseline.shape != edited.shape:
        raise ValueError(f"perceptual budget: baseline {baseline.shape} and edited {edited.shape} differ")
    return BudgetReference(baseline, product, protect).measure(edited)


class BudgetReference:
    """:func:`measure` against one baseline frame and region for several edited frames (every variant
    of one frame): the region, the baseline's averaging, CIELAB and SSIM terms are computed once.
    Each :meth:`measure` returns exactly what :func:`measure` returns."""

    def __init__(
        self, baseline: np.ndarray, product: np.ndarray | None = None, protect: np.ndarray | None = None
    ) -> None:
        baseline = np.asarray(baseline)
        self.shape = baseline.shape
        region = outside_region(product, protect, baseline.shape[:2])
        self.factor = factor = downsample_factor(baseline.shape)
        if factor > 1:
            height, width = baseline.shape[0] // factor, baseline.shape[1] // factor
            crop = (slice(0, height * factor), slice(0, width * factor))
            baseline = cv2.resize(baseline[crop], (width, height), interpolation=cv2.INTER_AREA)
            # a block counts only when all its pixels are outside product and protected regions
            region = (
                cv2.resize(region[crop].astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) >= 1.0 - 1e-6
            )
        self.region = region
        self.pixels = int(region.sum())
        if self.pixels:
            self._ssim = _budget_ssim(baseline)
            self._lab = rgb_to_lab(baseline)

    def measure(self, edited: np.ndarray) -> BudgetMeasure:
        edited = np.asarray(edited)
        if edited.shape != self.shape:
            raise ValueError(f"perceptual budget: baseline {self.shape} and edited {edited.shape} differ")
        if self.pixels == 0:
            return BudgetMeasure(1.0, 0.0, 0)
        factor = self.factor
        if factor > 1:
            height, width = edited.shape[0] // factor, edited.shape[1] // factor
            edited = cv2.resize(
                edited[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA
            )
        return BudgetMeasure(
            ssim=float(self._ssim.map(edited)[self.region].mean()),
            delta_e=float(ciede2000(self._lab, rgb_to_lab(edited))[self.region].mean()),
            pixels=self.pixels,
        )
