"""The perceptual budget: how far an edited frame may drift from baseline, outside product and protected
regions (on average and locally) and on the product itself.

A variant is a stimulus that may differ from baseline only in where attention goes, so the
editor's changes to the rest of the frame are bounded per frame by two standard full-reference
measures, both computed only over the pixels outside ``product OR protect``:

- SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) on luma with the paper's 11x11 Gaussian window
  (sigma 1.5), K1 0.01, K2 0.03, data range 1: the mean of the SSIM map over the region must be
  at least ``min_ssim`` (default 0.90): structure, contrast and detail are kept;
- CIEDE2000 (Sharma, Wu, Dalal 2005) between the CIELAB colours (sRGB, D65) of corresponding
  pixels: its mean over the region must be at most ``max_delta_e`` (default 6; about 2-3 is a
  just-noticeable difference side by side, 6 a clearly visible but gentle grade).

Besides the mean, the local budget bounds how concentrated the change is, over the same pixels:

- the share changed by more than 10 CIEDE2000 units (at most 2 %): one just-noticeable difference
  is about 2.3 units (Mahy, Van Eycken, Oosterlinck 1994; Sharma 2003), 10 a clearly visible one;
- the 2nd percentile of the mean SSIM of 32-pixel patches (at least 0.75): no region loses its structure;
- sharpness, the variance of the Laplacian of the grey frame smoothed at sigma 1 (Pech-Pacheco et
  al. 2000's focus measure; the smoothing ignores sensor noise), as a ratio to baseline over the
  frame (at least 0.75) and its 2nd percentile over textured patches (at least 0.6): no object
  defocused into a ghost.

The product budget bounds the product's own edit in both directions: SSIM of its luma at least
0.80, its luma spread within 0.55-2.0x baseline (no translucent flattening) and its mean chroma
within 0.35-2.2x (no greying towards the surround). The floors were checked on the contact
sheets of the shared real clips (``docs/editing-and-checks.md``).

All are vectorised numpy/OpenCV; :func:`ciede2000` reproduces Sharma et al.'s published test
pairs to 1e-4 (``tests/test_perceptual_budget.py``). Like Wang's reference ``ssim.m``, frames are
first averaged down by an integer factor ``max(1, round(min(H, W) / 256))`` (1 for the 288x512
demo, 4 for 1080x1920): SSIM's 11-pixel window then covers the same visual angle at any size, and a
real-size ad costs what a small one does. The same measure gives the placebo its
matched magnitude (mean CIEDE2000 outside the region equal to the matched boost's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from align_core.measurement.image_metrics import SsimReference

__all__ = [
    "DEFAULT_MAX_DELTA_E",
    "DEFAULT_MAX_VISIBLE_SHARE",
    "DEFAULT_MIN_PATCH_SHARPNESS",
    "DEFAULT_MIN_PATCH_SSIM",
    "DEFAULT_MIN_PRODUCT_SSIM",
    "DEFAULT_MIN_SHARPNESS",
    "DEFAULT_MIN_SSIM",
    "DEFAULT_PATCH_PERCENTILE",
    "DEFAULT_PATCH_PX",
    "DEFAULT_PRODUCT_CHROMA",
    "DEFAULT_PRODUCT_CONTRAST",
    "DEFAULT_VISIBLE_DELTA_E",
    "LIMITS",
    "MEASURES",
    "BudgetMeasure",
    "BudgetReference",
    "Limit",
    "PerceptualBudget",
    "ciede2000",
    "downsample_factor",
    "measure",
    "ssim_map",
]


# The budget's defaults, read by every setting that carries one (the editor's, the stage's, the check's).
# Mean budget, outside product and protected regions (Wang et al. 2004; Sharma et al. 2005):
DEFAULT_MIN_SSIM = 0.90  # per-frame mean SSIM vs baseline outside product and protected regions, at least
DEFAULT_MAX_DELTA_E = 6.0  # per-frame mean CIEDE2000 vs baseline outside product and protected regions, at most
# Local budget, same region: how concentrated the change may be.
DEFAULT_VISIBLE_DELTA_E = 10.0  # a CIEDE2000 this large is a clearly visible difference (1 JND ~ 2.3: Mahy 1994)
DEFAULT_MAX_VISIBLE_SHARE = 0.02  # share of measured pixels changed by more than DEFAULT_VISIBLE_DELTA_E, at most
DEFAULT_PATCH_PX = 32  # patch side (pixels at the analysis resolution) of the local SSIM and sharpness
DEFAULT_PATCH_PERCENTILE = 2.0  # the local figures are this low percentile over the patches
DEFAULT_MIN_PATCH_SSIM = 0.75  # 2nd-percentile 32-px patch SSIM, at least
DEFAULT_MIN_SHARPNESS = 0.75  # variance of the Laplacian outside the product vs baseline, at least
DEFAULT_MIN_PATCH_SHARPNESS = 0.6  # 2nd percentile of that ratio over textured patches, at least
# Product budget: the product's own edit, both directions (boost and reduction).
DEFAULT_MIN_PRODUCT_SSIM = 0.80  # SSIM of the product region's luma vs baseline, at least
DEFAULT_PRODUCT_CONTRAST = (0.55, 2.0)  # std of the product's luma vs baseline (flattened into a ghost / harsh)
DEFAULT_PRODUCT_CHROMA = (0.35, 2.2)  # mean CIELAB chroma of the product vs baseline (greyed out / garish)

#: A patch counts as textured for the sharpness percentile when its baseline Laplacian variance is at least
#: this ([0, 1] luma; a Laplacian std of 0.01, ~2.5 grey levels): flat patches have no focus to lose.
TEXTURED_PATCH_VARIANCE = 2e-5
#: Gaussian sigma (pixels at the analysis resolution) applied before the sharpness Laplacian.
SHARPNESS_SIGMA = 1.0
#: Added to both luma spreads of the product-contrast ratio ([0, 1] luma; SSIM's K2): a flat product
#: that gains a little detail is not "harsh".
CONTRAST_FLOOR = 0.03
#: A product chroma below this (CIELAB units) is grey: its chroma ratio is not measured.
GREY_CHROMA = 5.0


@dataclass(frozen=True)
class PerceptualBudget:
    """Per-frame limits outside product and protected regions, and on the product's own edit
    (recorded with every variant). The sources of the defaults are in the module docstring."""

    min_ssim: float = DEFAULT_MIN_SSIM
    max_delta_e: float = DEFAULT_MAX_DELTA_E
    max_visible_share: float = DEFAULT_MAX_VISIBLE_SHARE
    min_patch_ssim: float = DEFAULT_MIN_PATCH_SSIM
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    min_patch_sharpness: float = DEFAULT_MIN_PATCH_SHARPNESS
    min_product_ssim: float = DEFAULT_MIN_PRODUCT_SSIM
    min_product_contrast: float = DEFAULT_PRODUCT_CONTRAST[0]
    max_product_contrast: float = DEFAULT_PRODUCT_CONTRAST[1]
    min_product_chroma: float = DEFAULT_PRODUCT_CHROMA[0]
    max_product_chroma: float = DEFAULT_PRODUCT_CHROMA[1]

    def __post_init__(self) -> None:
        if not 0.0 < self.min_ssim <= 1.0:
            raise ValueError(f"perceptual budget: min_ssim must be in (0, 1], got {self.min_ssim}")
        if self.max_delta_e <= 0:
            raise ValueError(f"perceptual budget: max_delta_e must be positive, got {self.max_delta_e}")
        for limit in LIMITS:
            value = getattr(self, limit.setting)
            allowed = (0.0 < value <= limit.neutral) if limit.lower else (value >= limit.neutral and value > 0.0)
            if not allowed:
                side = f"in (0, {limit.neutral:g}]" if limit.lower else f"at least {max(limit.neutral, 1e-9):g}"
                raise ValueError(f"perceptual budget: {limit.setting} must be {side}, got {value}")

    @classmethod
    def from_settings(
        cls, min_ssim: float, max_delta_e: float, limits: Mapping[str, float] | None = None
    ) -> PerceptualBudget:
        """The budget of a config that carries the two mean limits as fields and any other limit by name
        in ``limits`` (a resource's or an op's ``budget_limits``); an unknown or repeated name is refused."""
        extra = dict(limits or {})
        known = {field.name for field in fields(cls)} - {"min_ssim", "max_delta_e"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ValueError(
                f"perceptual budget: unknown limit(s) {unknown} in budget_limits (min_ssim and max_delta_e have "
                f"their own settings); the others are {sorted(known)}"
            )
        return cls(min_ssim=min_ssim, max_delta_e=max_delta_e, **{name: float(value) for name, value in extra.items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def excess(self, figures: Mapping[str, float], slack: float = 0.0) -> dict[str, float]:
        """Per limit (by its budget field): how far past it ``figures`` are in relative units (<= 0 within, > 0 over);
        ``slack`` (>= 0) tightens every limit by that share of its distance from no change."""
        return {
            limit.setting: limit.excess(figures[limit.measure], getattr(self, limit.setting), slack) for limit in LIMITS
        }

    def violations(self, figures: Mapping[str, float]) -> list[str]:
        """What ``figures`` exceed, each as ``measure value op limit`` (empty: within every limit)."""
        return [
            limit.describe(figures[limit.measure], getattr(self, limit.setting))
            for limit in LIMITS
            if limit.excess(figures[limit.measure], getattr(self, limit.setting)) > 0
        ]

    def over(self, table: Any) -> Any:
        """Per row of a frame table (a DataFrame with the measure columns): True when any limit is exceeded."""
        over = None
        for limit in LIMITS:
            if limit.measure not in table:
                continue
            column = table[limit.measure].fillna(limit.neutral)
            bad = limit.excess(column, getattr(self, limit.setting)) > 0
            over = bad if over is None else over | bad
        return over


@dataclass(frozen=True)
class Limit:
    """One limit of the budget: the measure it bounds, the budget field holding it, the measure's value
    when nothing changed (``neutral``) and a label for messages."""

    measure: str
    setting: str
    neutral: float
    label: str
    lower: bool  # a lower bound (the measure must stay at least the limit), else an upper one

    def excess(self, value: Any, limit: float, slack: float = 0.0) -> Any:
        """``(value - neutral) / ((limit - neutral) (1 - slack)) - 1``: the same formula bounds a maximum
        (neutral 0 below it) and a minimum or a ratio's either side (neutral 1). A limit at the neutral
        value allows no change at all."""
        span = (limit - self.neutral) * (1.0 - slack)
        if span == 0.0:
            span = -1e-12 if self.lower else 1e-12
        return (value - self.neutral) / span - 1.0

    def describe(self, value: float, limit: float) -> str:
        return f"{self.label} {value:.3g} {'<' if self.lower else '>'} {limit:g}"


LIMITS = (
    Limit("ssim", "min_ssim", 1.0, "mean SSIM", True),
    Limit("delta_e", "max_delta_e", 0.0, "mean CIEDE2000", False),
    Limit("visible_share", "max_visible_share", 0.0, f"share changed > {DEFAULT_VISIBLE_DELTA_E:g} CIEDE2000", False),
    Limit("patch_ssim", "min_patch_ssim", 1.0, f"p{DEFAULT_PATCH_PERCENTILE:g} {DEFAULT_PATCH_PX}-px patch SSIM", True),
    Limit("sharpness", "min_sharpness", 1.0, "sharpness (Laplacian variance vs baseline)", True),
    Limit("patch_sharpness", "min_patch_sharpness", 1.0, f"p{DEFAULT_PATCH_PERCENTILE:g} patch sharpness", True),
    Limit("product_ssim", "min_product_ssim", 1.0, "product SSIM", True),
    Limit("product_contrast", "min_product_contrast", 1.0, "product contrast", True),
    Limit("product_contrast", "max_product_contrast", 1.0, "product contrast", False),
    Limit("product_chroma", "min_product_chroma", 1.0, "product chroma", True),
    Limit("product_chroma", "max_product_chroma", 1.0, "product chroma", False),
)

#: The per-frame measures a budget row carries (``BudgetMeasure`` fields, ``pixels`` aside).
MEASURES = tuple(dict.fromkeys(limit.measure for limit in LIMITS))


@dataclass(frozen=True)
class BudgetMeasure:
    """One frame against baseline: the mean figures over ``pixels`` outside the region, the local ones
    (share over the visible difference, low-percentile patch SSIM and sharpness) and the product's own
    (SSIM, contrast and chroma ratios). Each defaults to its value for no change."""

    ssim: float
    delta_e: float
    pixels: int
    visible_share: float = 0.0
    patch_ssim: float = 1.0
    sharpness: float = 1.0
    patch_sharpness: float = 1.0
    product_ssim: float = 1.0
    product_contrast: float = 1.0
    product_chroma: float = 1.0

    def within(self, budget: PerceptualBudget, slack: float = 0.0) -> bool:
        """True when every limit holds; ``slack`` (>= 0) tightens them (a margin for codec noise)."""
        return self.excess(budget, slack) <= 0.0

    def excess(self, budget: PerceptualBudget, slack: float = 0.0) -> float:
        """The largest relative excess over the budget's limits (<= 0: within all)."""
        return max(budget.excess(self.to_dict(), slack).values())

    def reason(self, budget: PerceptualBudget) -> str:
        problems = budget.violations(self.to_dict())
        if problems:
            return "; ".join(problems)
        return f"within budget (SSIM {self.ssim:.3f}, mean CIEDE2000 {self.delta_e:.2f})"

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
    of one frame): the region, the baseline's averaging, CIELAB, SSIM terms, patch grid and
    Laplacian are computed once. Each :meth:`measure` returns exactly what :func:`measure` returns."""

    def __init__(
        self,
        baseline: np.ndarray,
        product: np.ndarray | None = None,
        protect: np.ndarray | None = None,
        visible_delta_e: float = DEFAULT_VISIBLE_DELTA_E,
    ) -> None:
        """``visible_delta_e``: the CIEDE2000 ``visible_share`` counts above (an editor measures below the
        budget's own threshold, so the codec's error cannot lift pixels over it after encoding)."""
        baseline = np.asarray(baseline)
        self.shape = baseline.shape
        self.visible_delta_e = visible_delta_e
        region = outside_region(product, protect, baseline.shape[:2])
        # the product budget covers the product's own unprotected pixels
        product_region = np.zeros(baseline.shape[:2], dtype=bool)
        if product is not None:
            product_region = np.asarray(product, dtype=bool) & outside_region(None, protect, baseline.shape[:2])
        self.factor = factor = downsample_factor(baseline.shape)
        if factor > 1:
            baseline = _shrink_frame(baseline, factor)
            # a block counts only when all its pixels are outside product and protected regions
            region = _shrink_frame(region.astype(np.float32), factor) >= 1.0 - 1e-6
            product_region = _shrink_frame(product_region.astype(np.float32), factor) >= 0.5
        self.region = region
        self.pixels = int(region.sum())
        self.product_region = product_region
        self.product_pixels = int(product_region.sum())
        if self.pixels or self.product_pixels:
            self._ssim = _budget_ssim(baseline)
            self._lab = rgb_to_lab(baseline)
            self._local = _LocalReference(self._ssim.x, region)
            self._product = _ProductReference(self._ssim.x, self._lab, product_region)

    def measure(self, edited: np.ndarray) -> BudgetMeasure:
        edited = np.asarray(edited)
        if edited.shape != self.shape:
            raise ValueError(f"perceptual budget: baseline {self.shape} and edited {edited.shape} differ")
        if self.pixels == 0 and self.product_pixels == 0:
            return BudgetMeasure(1.0, 0.0, 0)
        if self.factor > 1:
            edited = _shrink_frame(edited, self.factor)
        ssim = self._ssim.map(edited)
        lab = rgb_to_lab(edited)
        product = self._product.measure(ssim, self._ssim.luma(edited), lab)
        if self.pixels == 0:
            return BudgetMeasure(1.0, 0.0, 0, **product)
        delta_e = ciede2000(self._lab, lab)[self.region]
        return BudgetMeasure(
            ssim=float(ssim[self.region].mean()),
            delta_e=float(delta_e.mean()),
            pixels=self.pixels,
            visible_share=float(np.count_nonzero(delta_e > self.visible_delta_e) / delta_e.size),
            **self._local.measure(ssim, self._ssim.luma(edited)),
            **product,
        )


def _shrink_frame(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` area-averaged by ``factor`` (its last partial blocks cropped)."""
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return cv2.resize(image[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA)


def _laplacian(grey: np.ndarray) -> np.ndarray:
    """The 3x3 Laplacian of the grey image smoothed at ``SHARPNESS_SIGMA`` (a Laplacian of Gaussian):
    its variance is Pech-Pacheco et al.'s (2000) focus measure, the smoothing keeps sensor and
    codec noise (which a gentle grade may remove) from standing in for the edges of objects."""
    smooth = cv2.GaussianBlur(grey, (0, 0), SHARPNESS_SIGMA, borderType=cv2.BORDER_REFLECT)
    return cv2.Laplacian(smooth, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)


def _patch_sums(values: np.ndarray, px: int = DEFAULT_PATCH_PX) -> np.ndarray:
    """Sums of ``values`` over a grid of ``px`` x ``px`` patches (the last row/column of patches may be smaller)."""
    rows = np.add.reduceat(values, np.arange(0, values.shape[0], px), axis=0)
    return np.add.reduceat(rows, np.arange(0, values.shape[1], px), axis=1)


def _low(values: np.ndarray) -> float:
    """The budget's low percentile of ``values`` (1 when there are none)."""
    return float(np.percentile(values, DEFAULT_PATCH_PERCENTILE)) if values.size else 1.0


class _LocalReference:
    """The local budget's baseline side: which patches count (at least half measured pixels) and the
    baseline's Laplacian variance overall and per patch. Sharpness is measured only on pixels the
    Laplacian of Gaussian cannot see the excluded regions from (their edge is the product's edit)."""

    def __init__(self, grey: np.ndarray, region: np.ndarray) -> None:
        self.weight = region.astype(np.float64)
        self.count = _patch_sums(self.weight)
        self.patches = self.count >= 0.5 * DEFAULT_PATCH_PX**2
        reach = 2 * int(np.ceil(3 * SHARPNESS_SIGMA)) + 3
        kernel = np.ones((reach, reach), np.uint8)
        inner = cv2.erode(region.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        self.sharp_weight = inner.astype(np.float64)
        self.sharp_count = _patch_sums(self.sharp_weight)
        self.var, self.patch_var = self._variances(grey)
        self.textured = (self.sharp_count >= 0.5 * DEFAULT_PATCH_PX**2) & (self.patch_var >= TEXTURED_PATCH_VARIANCE)

    def _variances(self, grey: np.ndarray) -> tuple[float, np.ndarray]:
        lap = _laplacian(grey) * self.sharp_weight
        total = max(float(self.sharp_weight.sum()), 1.0)
        var = float((lap * lap).sum() / total - (lap.sum() / total) ** 2)
        count = np.maximum(self.sharp_count, 1.0)
        patch_var = _patch_sums(lap * lap) / count - (_patch_sums(lap) / count) ** 2
        return var, patch_var

    def measure(self, ssim: np.ndarray, grey: np.ndarray) -> dict[str, float]:
        """p2 patch SSIM, sharpness ratio overall and p2 over textured patches."""
        patch_ssim = _patch_sums(ssim * self.weight)[self.patches] / self.count[self.patches]
        var, patch_var = self._variances(grey)
        sharpness = var / self.var if self.var > TEXTURED_PATCH_VARIANCE / 100 else 1.0
        ratios = patch_var[self.textured] / self.patch_var[self.textured]
        return {"patch_ssim": _low(patch_ssim), "sharpness": float(sharpness), "patch_sharpness": _low(ratios)}


class _ProductReference:
    """The product budget's baseline side: the product's luma spread and mean chroma."""

    MIN_PIXELS = 16  # a product smaller than this at the analysis resolution is not measured

    def __init__(self, grey: np.ndarray, lab: np.ndarray, product: np.ndarray) -> None:
        self.product = product
        self.measured = int(product.sum()) >= self.MIN_PIXELS
        if self.measured:
            self.std = float(grey[product].std())
            self.chroma = float(np.hypot(lab[..., 1], lab[..., 2])[product].mean())

    def measure(self, ssim: np.ndarray, grey: np.ndarray, lab: np.ndarray) -> dict[str, float]:
        if not self.measured:
            return {}
        product = self.product
        contrast = (float(grey[product].std()) + CONTRAST_FLOOR) / (self.std + CONTRAST_FLOOR)
        chroma = (
            float(np.hypot(lab[..., 1], lab[..., 2])[product].mean()) / self.chroma
            if self.chroma >= GREY_CHROMA
            else 1.0
        )
        return {"product_ssim": float(ssim[product].mean()), "product_contrast": contrast, "product_chroma": chroma}
