"""The model-free salience editor: bounded, realistic parametric edits under a perceptual budget.

The operations are those of the saliency-guided editing literature (Mechrez et al. 2016,
"Saliency driven image manipulation"; Mejjati et al. 2020, "Look here!"; Aberman et al. 2022,
"Deep saliency prior for reducing visual distraction"; Miangoleh et al. 2023, "Realistic
saliency guided image enhancement"): a few global photographic parameters applied inside a
feathered mask, never a generative change of content.

- BOOST, on the product: exposure, local contrast ("clarity", an unsharp mask at a large
  radius), saturation, sharpness (an unsharp mask at a small radius) and warmth; on the
  background, gently: defocus, desaturation and contrast reduction.
- REDUCE, on the product: desaturation, contrast reduction, a slight defocus and a partial
  recolouring towards the colour of the background around it (Aberman et al.'s recolouring
  operator); on the background, gently: saturation, contrast and sharpness.
- PLACEBO: a uniform colour grade (a shift of the a*b* chroma plane, lightness unchanged) of
  the background outside the product (and its margin) and the protected regions, in the hue
  direction orthogonal to the product-vs-background colour difference (so the product's colour
  contrast with its surround changes as little as possible), at the perceptual magnitude of the
  matched boost: its mean CIEDE2000 outside product and protected regions equals the boost's.
- IDENTITY: the same float conversion and composite at strength 0 (returns the frame).

Every edit is bounded by a perceptual budget outside ``product OR protect``
(:mod:`align_core.measurement.perceptual_budget`: SSIM >= 0.90, mean CIEDE2000 <= 6 by default, checked here
with a small ``budget_slack`` margin for codec noise): the requested strength is used when it
fits; otherwise the product keeps its requested (bounded) edit and the background's strength is
the largest that fits, found by a bracketed monotone search (the budget measures grow with
strength); the edit is rendered there, reported as capped, never bigger. The
editor reads no scorer internals: the product's operations act on the whole mask; the
background's are weighted by the calibrating scorer's OUTPUT on the original frame (the request's
attention map, outside the product: :meth:`SalienceEditor.distractor_weight`), so the budget is
spent where attention outside the product is (Aberman et al.'s distractor reduction) and the least
attended background is spared; how strong an edit must be is measured by calling the calibrating
scorer as a black box (:func:`align_core.measurement.manipulation.calibrate_strength_map`).

Protected pixels (text, logos, faces; ``request.protect``) are never edited: the output equals
the input there. A frame whose product is absent (empty mask) is returned unchanged for every
kind: there is no product share to move.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from align_core.measurement.perceptual_budget import (
    DEFAULT_VISIBLE_DELTA_E,
    BudgetMeasure,
    BudgetReference,
    PerceptualBudget,
    downsample_factor,
)
from align_core.stimuli.editing.base import EditReport, KeyframeEditRequest
from align_core.stimuli.editing.regions import bounding_box, dilate_ellipse, restore

__all__ = [
    "SalienceEditor",
    "fast_gaussian_blur",
]

EDITOR_VERSION = "5"  # 5: background operations weighted by the attention outside the product; 4: the local and product budget, a gentler background defocus; 3: bounded parametric edits under a perceptual budget; colour-grade placebo; no scorer geometry

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class SalienceSettings:
    """Magnitudes at strength 1; lengths are fractions of the frame's shorter side."""

    max_strength: float = 1.0
    feather: float = 0.03  # width of the soft mask edge
    # boost, product
    exposure_stops: float = 0.35
    product_saturation: float = 0.35
    product_clarity: float = 0.5  # local-contrast gain (unsharp mask at clarity_sigma)
    product_sharpen: float = 0.8  # fine-detail gain (unsharp mask at sharpen_sigma)
    warmth: float = 0.03  # R up / B down (units of [0, 1] RGB)
    # boost, background (gentle)
    background_defocus: float = 0.004  # Gaussian sigma (small: a visible defocus of objects is outside the budget)
    background_desaturate: float = 0.5
    background_flatten: float = 0.3
    # reduce, product
    reduce_desaturate: float = 0.6
    reduce_flatten: float = 0.4
    reduce_defocus: float = 0.008
    reduce_recolour: float = 0.5  # share of the way to the surrounding background's colour
    recolour_reach: float = 0.12  # Gaussian sigma of the background fill under the product
    # reduce, background (gentle)
    background_saturate: float = 0.35
    background_contrast: float = 0.2
    background_sharpen: float = 0.6
    clarity_sigma: float = 0.03
    sharpen_sigma: float = 0.004
    # distractor weighting (Aberman et al. 2022): the background operations are weighted by where the
    # calibrating scorer's map (its output on the original frame) puts attention outside the product.
    # Measured on demo and real keyframes (docs/editing-and-checks.md): a mild tilt buys the most; a hard
    # concentration on the top 5 % (gain 2) bought less, as the local budget bounds concentrated change
    distractor_weighting: bool = True
    distractor_gain: float = 1.15  # the background colour operations' strength where the weight is 1
    distractor_defocus_gain: float = 1.0  # the same for the defocus/sharpening (sharpness binds first)
    distractor_low: float = 0.0  # percentile of outside attention at and below which the background is untouched
    distractor_high: float = 30.0  # percentile of outside attention at and above which the full weight applies
    distractor_spread: float = 0.03  # Gaussian sigma (fraction of the shorter side) smoothing the map
    # placebo
    placebo_max_shift: float = 25.0  # largest a*b* shift (CIELAB units) the placebo may use
    placebo_margin: float = 0.02  # the placebo stays this far outside the mask
    # budget (outside product OR protect, against the input frame)
    min_ssim: float = PerceptualBudget().min_ssim
    max_delta_e: float = PerceptualBudget().max_delta_e
    budget_slack: float = 0.1  # tighten both limits by this share at edit time (codec noise)
    budget_steps: int = 5  # bisection steps when the requested strength exceeds the budget
    # the share over the visible CIEDE2000 is counted this much below it at edit time: H.264's error
    # (CRF 16, 4:2:0 chroma) lifts pixels just under the threshold over it in the rendered variant
    codec_delta_e: float = 2.0

    @property
    def budget(self) -> PerceptualBudget:
        return PerceptualBudget(min_ssim=self.min_ssim, max_delta_e=self.max_delta_e)


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ _LUMA


def _saturate(image: np.ndarray, gain: float | np.ndarray) -> np.ndarray:
    luma = _luma(image)[..., None]
    return luma + gain * (image - luma)


#: Blurs wider than this (pixels) run on a downsampled level: what a full-resolution Gaussian of
#: that width keeps is low-frequency, so an area-downsample, a blur of the remaining width and a
#: bilinear upsample give the same image (to a grey level) at a fraction of the cost (at
#: 1080x1920 a sigma-32 blur drops from ~0.5 s to ~10 ms). Demo-size frames never reach it.
PYRAMID_SIGMA = 12.0
#: Large frames: the previous frame's strength is kept when it lands within this share of the budget.
WARM_TOLERANCE = 0.25


def fast_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return image
    height, width = image.shape[:2]
    factor = int(sigma // 4.0)
    if sigma >= PYRAMID_SIGMA and min(height, width) >= 8 * factor:
        small_size = (max(1, width // factor), max(1, height // factor))
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        rest = (
            float(np.sqrt(max(0.09, sigma**2 - (factor / 2.0) ** 2))) / factor
        )  # the area step blurs a little already
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=rest, sigmaY=rest, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _affine_colour(image: np.ndarray, gain: float, contrast: float, centre: float) -> np.ndarray:
    """``centre + contrast * (saturate(image, gain) - centre)`` as one 3x4 colour transform (one pass)."""
    matrix = gain * np.eye(3, dtype=np.float64) + (1.0 - gain) * np.outer(np.ones(3), _LUMA.astype(np.float64))
    affine = np.concatenate([contrast * matrix, np.full((3, 1), (1.0 - contrast) * centre)], axis=1).astype(np.float32)
    return cv2.transform(image, affine)


def _weighted_mean(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    step = max(
        1, min(values.shape[0], values.shape[1]) // 256
    )  # a global mean: every k-th pixel of a large frame is plenty
    if step > 1:
        values, weight = values[::step, ::step], weight[::step, ::step]
    total = float(weight.sum())
    if total <= 0:
        return values.reshape(-1, values.shape[-1]).mean(axis=0) if values.ndim == 3 else np.float32(values.mean())
    if values.ndim == 3:
        return (values * weight[..., None]).reshape(-1, values.shape[-1]).sum(axis=0) / total
    return np.float32((values * weight).sum() / total)


class SalienceEditor:
    """Keyframe editor that raises or lowers the product's share of attention without a model."""

    name = "salience"
    # A pure, cheap function of (frame, mask, strength): the renderer edits every frame with its own mask.
    propagation = "every_frame"
    calibrates = True  # its effect on the measuring scorer is measured per video before rendering
    # Edits of one frame may run on several threads at once (caches are locked or swapped whole);
    # the renderer then runs a frame's boost, reduction and placebo side by side.
    concurrent_edits = True

    def __init__(self, max_strength: float = 1.0, budget: PerceptualBudget | None = None, **settings: Any):
        """``budget``: every limit of the perceptual budget (default: :class:`PerceptualBudget`'s, with the
        settings' ``min_ssim`` and ``max_delta_e``); given, it overrides those two settings."""
        if budget is not None:
            settings = {**settings, "min_ssim": budget.min_ssim, "max_delta_e": budget.max_delta_e}
        self.settings = SalienceSettings(max_strength=float(max_strength), **settings)
        if not 0.0 <= self.settings.max_strength <= 1.0:
            raise ValueError(f"max_strength must be in [0, 1], got {max_strength}")
        self.budget = self.settings.budget if budget is None else budget
        self._cache: dict[tuple[Any, ...], tuple[np.ndarray, float, bool, BudgetMeasure]] = {}
        self._warm: dict[tuple[str, float], tuple[float, bool]] = {}  # large frames: last strength per request
        # the frames being measured (with their masks) and their side of the budget measure
        self._references: dict[tuple[int, int, int], tuple[Any, ...]] = {}
        self._lock = threading.Lock()  # guards the caches: the renderer may run a frame's edits on two threads

    def lineage(self) -> dict[str, Any]:
        return {
            "editor": self.name,
            "version": EDITOR_VERSION,
            "model": None,
            "weights": None,
            "settings": asdict(self.settings),
            "perceptual_budget": self.budget.to_dict(),
        }

    # -- geometry ---------------------------------------------------------------------------------
    def _scale(self, shape: tuple[int, ...]) -> float:
        return float(min(shape[0], shape[1]))

    def product_weight(self, mask: np.ndarray) -> np.ndarray:
        """Soft product weight in [0, 1]: 1 inside, 0 outside, a linear ramp across the edge."""
        width = max(1.0, self.settings.feather * self._scale(mask.shape))
        weight = np.zeros(mask.shape, np.float32)
        box = bounding_box(
            mask, int(np.ceil(width)) + 2
        )  # the ramp reaches width / 2 past the edge: distances beyond are clipped
        if box is None:
            return weight
        crop = np.ascontiguousarray(mask[box])
        mask_u8 = crop.astype(np.uint8)
        inside = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3)
        outside = cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 3)
        signed = np.where(crop, inside, -outside).astype(np.float32)
        weight[box] = np.clip(0.5 + signed / width, 0.0, 1.0)
        return weight

    def placebo_weight(self, mask: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """Ramp from 0 at the forbidden region (dilated mask, disallowed pixels) to 1 a feather away."""
        scale = self._scale(mask.shape)
        margin = int(round(self.settings.placebo_margin * scale))
        forbidden = dilate_ellipse(mask, margin)
        free = (~forbidden & allowed).astype(np.uint8)
        distance = cv2.distanceTransform(free, cv2.DIST_L2, 3)
        width = max(1.0, self.settings.feather * scale)
        return np.clip(distance / width, 0.0, 1.0).astype(np.float32)

    def distractor_weight(self, attention: Any, mask: np.ndarray) -> np.ndarray | None:
        """Where the background operations act, in [0, 1]: the calibrating scorer's map of the original
        frame (its output, ``request.attention``) outside the product, smoothed, 0 at and below its
        ``distractor_low`` percentile there and 1 from its ``distractor_high`` percentile (Aberman et al.
        2022: reduce the distractors, not the whole background). None (uniform operations) when the
        map is missing, has the wrong shape or is flat outside the product."""
        cfg = self.settings
        if not cfg.distractor_weighting or attention is None or tuple(attention.shape) != mask.shape:
            return None
        height, width = mask.shape
        factor = max(1, int(min(height, width)) // 64)  # the weight is smooth: work at ~64 px
        small_size = (max(1, width // factor), max(1, height // factor))
        outside = cv2.resize((~mask).astype(np.float32), small_size, interpolation=cv2.INTER_AREA)
        values = cv2.resize(np.asarray(attention, np.float32), small_size, interpolation=cv2.INTER_AREA)
        sigma = max(0.5, cfg.distractor_spread * min(small_size))
        spread = fast_gaussian_blur(np.ascontiguousarray(values * outside), sigma)
        spread = spread / np.maximum(fast_gaussian_blur(outside, sigma), 1e-3)  # attention outside only
        background = spread[outside > 0.99]
        if background.size < 16:
            return None
        low, high = (float(v) for v in np.percentile(background, [cfg.distractor_low, cfg.distractor_high]))
        if not high - low > 1e-3 * max(abs(high), 1e-6):
            return None
        weight = np.clip((spread - low) / (high - low), 0.0, 1.0).astype(np.float32)
        return cv2.resize(weight, (width, height), interpolation=cv2.INTER_LINEAR)

    # -- operations -------------------------------------------------------------------------------
    # Product operations run on the product's bounding box only (grown by three widths of the
    # widest blur applied there, so the crop's border never reaches a weighted pixel); background
    # colour operations are one 3x4 colour transform. Both give the same image as whole-frame
    # arithmetic, at a fraction of the cost on a 1080x1920 frame.
    def _detail(self, image: np.ndarray, sigma_frac: float, scale: float | None = None) -> np.ndarray:
        scale = self._scale(image.shape) if scale is None else scale
        return image - fast_gaussian_blur(image, sigma_frac * scale)

    def boost_image(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        strength: float,
        background_strength: float | None = None,
        distractor: np.ndarray | None = None,
    ) -> np.ndarray:
        """Float [0,1] frame: product brighter, crisper, more colourful and warmer; background gently muted.

        ``background_strength`` (default ``strength``) scales the background operations alone: the
        budget limits the background, the product's edits are bounded by their own magnitudes.
        ``distractor`` (:meth:`distractor_weight`): the background operations act where it is high, up to
        ``distractor_gain`` times stronger, and leave the pixels where it is 0 untouched.
        """
        s, cfg = strength, self.settings
        b = s if background_strength is None else background_strength
        defocus, weight = b, distractor
        if weight is not None:
            b, defocus = b * cfg.distractor_gain, b * cfg.distractor_defocus_gain
        scale = self._scale(image.shape)
        w_prod = self.product_weight(mask)
        background = _blend(image, fast_gaussian_blur(image, defocus * cfg.background_defocus * scale), weight)
        centre = _weighted_mean(_luma(background), 1.0 - w_prod)  # saturation keeps luma: the mean is the same after it
        out = _affine_colour(
            background,
            max(0.0, 1.0 - b * cfg.background_desaturate),
            max(0.1, 1.0 - b * cfg.background_flatten),
            float(centre),
        )
        out = _blend(background, out, weight)
        box = bounding_box(w_prod, int(np.ceil(3 * max(cfg.clarity_sigma, cfg.sharpen_sigma) * scale)))
        if box is None:
            return out
        crop = image[box]
        product = crop * np.float32(2.0 ** (s * cfg.exposure_stops))
        product = product + s * cfg.product_clarity * self._detail(crop, cfg.clarity_sigma, scale)
        product = product + s * cfg.product_sharpen * self._detail(crop, cfg.sharpen_sigma, scale)
        product = _saturate(product, 1.0 + s * cfg.product_saturation)
        product = product + np.array([s * cfg.warmth, 0.0, -s * cfg.warmth], np.float32)
        weight = w_prod[box][..., None]
        out[box] = weight * product + (1.0 - weight) * out[box]
        return out

    def background_fill(self, image: np.ndarray, w_bg: np.ndarray) -> np.ndarray:
        """The colour of the background around (and, smoothly extended, under) the product.

        Normalised convolution at quarter resolution: ``blur(image * w_bg) / blur(w_bg)``.
        """
        height, width = image.shape[:2]
        small_size = (max(1, width // 4), max(1, height // 4))
        sigma = max(1.0, self.settings.recolour_reach * self._scale(image.shape) / 4)
        img_s = cv2.resize(image * w_bg[..., None], small_size, interpolation=cv2.INTER_AREA)
        w_s = cv2.resize(w_bg, small_size, interpolation=cv2.INTER_AREA)
        num = fast_gaussian_blur(img_s, sigma)
        den = fast_gaussian_blur(w_s, sigma)
        fill = num / np.maximum(den, 1e-3)[..., None]
        empty = den <= 1e-3
        if empty.any():
            fill[empty] = _weighted_mean(image, w_bg).astype(np.float32)
        return cv2.resize(fill.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)

    def reduce_image(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        strength: float,
        background_strength: float | None = None,
        distractor: np.ndarray | None = None,
    ) -> np.ndarray:
        """Float [0,1] frame: product muted and recoloured towards its surround; background gently enriched
        (where ``distractor`` is high, as in :meth:`boost_image`: the competing regions gain attention)."""
        s, cfg = strength, self.settings
        b = s if background_strength is None else background_strength
        sharpen, weight = b, distractor
        if weight is not None:
            b, sharpen = b * cfg.distractor_gain, b * cfg.distractor_defocus_gain
        scale = self._scale(image.shape)
        w_prod = self.product_weight(mask)
        w_bg = 1.0 - w_prod
        sharpened = (
            image + sharpen * cfg.background_sharpen * self._detail(image, cfg.sharpen_sigma, scale)
            if sharpen > 0
            else image
        )
        sharpened = _blend(image, sharpened, weight)
        centre_bg = _weighted_mean(_luma(image), w_bg)
        out = _affine_colour(
            sharpened, 1.0 + b * cfg.background_saturate, 1.0 + b * cfg.background_contrast, float(centre_bg)
        )
        out = _blend(sharpened, out, weight)
        box = bounding_box(w_prod, int(np.ceil(3 * (cfg.reduce_defocus + cfg.clarity_sigma) * scale)))
        if box is None:
            return out
        crop = image[box]
        product = fast_gaussian_blur(crop, s * cfg.reduce_defocus * scale)
        fill = self.background_fill(image, w_bg)[box]
        # Recolour: move the product's local mean colour towards the surround's, keeping its detail.
        local_mean = fast_gaussian_blur(product, cfg.clarity_sigma * scale)
        product = product + s * cfg.reduce_recolour * (fill - local_mean)
        product = _saturate(product, 1.0 - s * cfg.reduce_desaturate)
        weight = w_prod[box]
        centre = _weighted_mean(_luma(product), weight)
        product = centre + (1.0 - s * cfg.reduce_flatten) * (product - centre)
        out[box] = weight[..., None] * product + (1.0 - weight[..., None]) * out[box]
        return out

    def placebo_direction(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit a*b* direction orthogonal to the product-minus-background mean colour difference."""
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        product = lab[mask][:, 1:].mean(axis=0)
        background = lab[~mask][:, 1:].mean(axis=0) if (~mask).any() else product
        diff = product - background
        norm = float(np.hypot(*diff))
        if norm < 1e-3:
            return np.array([0.0, 1.0], np.float32)  # no colour difference: a warm (yellow) grade
        orthogonal = np.array([-diff[1], diff[0]], np.float32) / norm
        return orthogonal if orthogonal[1] >= 0 else -orthogonal  # towards yellow: the usual warm grade

    def placebo_image(self, image: np.ndarray, weight: np.ndarray, shift: float, direction: np.ndarray) -> np.ndarray:
        """Shift the a*b* plane by ``shift`` CIELAB units along ``direction`` where ``weight`` is 1 (L kept)."""
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[..., 1] += weight * np.float32(shift * direction[0])
        lab[..., 2] += weight * np.float32(shift * direction[1])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    def placebo_image_large(
        self, image: np.ndarray, weight: np.ndarray, shift: float, direction: np.ndarray
    ) -> np.ndarray:
        """:meth:`placebo_image` for a large frame: the grade's RGB change is computed at half size and added.

        The change is a smooth chroma shift; H.264's 4:2:0 stores chroma at half size anyway, so
        the result matches the full-size conversion to within the codec's own rounding, at a
        quarter of the cost of two full-size float CIELAB conversions.
        """
        height, width = image.shape[:2]
        half = (max(1, width // 2), max(1, height // 2))
        small = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
        change = (
            self.placebo_image(small, cv2.resize(weight, half, interpolation=cv2.INTER_AREA), shift, direction) - small
        )
        return image + cv2.resize(change, (width, height), interpolation=cv2.INTER_LINEAR)

    # -- the budget --------------------------------------------------------------------------------
    def _render(
        self,
        image: np.ndarray,
        kind: str,
        mask: np.ndarray,
        strength: float,
        background: float | None = None,
        distractor: np.ndarray | None = None,
    ) -> np.ndarray:
        op = self.boost_image if kind == "boost" else self.reduce_image
        return np.clip(op(image, mask, strength, background, distractor), 0.0, 1.0)

    def _measure(self, frame: np.ndarray, edited: np.ndarray, mask: np.ndarray, protect: np.ndarray) -> BudgetMeasure:
        """The budget figures of float ``edited`` against uint8 ``frame`` (:func:`perceptual_budget.measure`).

        The frame's side of the measure (its shrunk copy on a large frame, CIELAB, SSIM terms:
        :class:`~align_core.measurement.perceptual_budget.BudgetReference`) is computed once and kept for the
        next candidates of the search. On a large frame the edit is area-averaged to the budget's
        measuring size before it is rounded to 8 bits (the same figures to within rounding,
        without a full-size conversion).
        """
        factor = downsample_factor(frame.shape)
        visible = (
            DEFAULT_VISIBLE_DELTA_E - self.settings.codec_delta_e
        )  # the share is counted below the budget's threshold
        key = (id(frame), id(mask), id(protect))
        with self._lock:
            entry = self._references.get(key)
        # the entry holds the arrays themselves, so a match cannot be a new array at a reused address
        if entry is None or entry[0] is not frame or entry[1] is not mask or entry[2] is not protect:
            if factor == 1:
                reference = BudgetReference(frame, mask, protect, visible)
            else:
                reference = BudgetReference(
                    _shrink(frame, factor), _shrink_any(mask, factor), _shrink_any(protect, factor), visible
                )
            entry = (frame, mask, protect, reference)
            with self._lock:
                self._references[key] = entry
                while len(self._references) > 6:  # a frame's boost, reduction and placebo searches
                    self._references.pop(next(iter(self._references)))
        small = edited if factor == 1 else _shrink(edited, factor)
        return entry[3].measure(_to_uint8(small))

    def within_budget(
        self,
        frame: np.ndarray,
        kind: str,
        mask: np.ndarray,
        protect: np.ndarray,
        strength: float,
        distractor: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, bool, BudgetMeasure]:
        """(edited float frame, background strength used, capped?, its budget measure) for a boost or reduce.

        The requested strength if it fits; otherwise the product keeps the requested strength and
        the background gets the largest that fits (bracketed search); if the product's edge alone
        is over budget, both are scaled together.
        """
        key = (
            hashlib.blake2b(frame.tobytes(), digest_size=16).digest(),
            hashlib.blake2b(np.packbits(mask).tobytes() + np.packbits(protect).tobytes(), digest_size=16).digest(),
            kind,
            round(strength, 6),
            None if distractor is None else hashlib.blake2b(distractor.tobytes(), digest_size=16).digest(),
        )
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        result = self._within_budget(frame, kind, mask, protect, strength, distractor)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > 4:  # boost and placebo of the same frame share one search
                self._cache.pop(next(iter(self._cache)))
        return result

    def _budget_excess(self, figures: BudgetMeasure) -> float:
        """How far past the (slack-tightened) budget a result is: <= 0 within, > 0 over (relative units),
        the worst of every limit: mean, local, sharpness and product."""
        return figures.excess(self.budget, self.settings.budget_slack)

    def _within_budget(
        self,
        frame: np.ndarray,
        kind: str,
        mask: np.ndarray,
        protect: np.ndarray,
        strength: float,
        distractor: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, bool, BudgetMeasure]:
        """The search, at the budget's own measuring resolution; on large frames the result is then
        rendered once at full resolution and measured there, stepping down if it is over."""
        factor = downsample_factor(frame.shape)
        if factor == 1:
            edited, used, capped, figures, joint = self._search_budget(
                frame, kind, mask, protect, strength, distractor=distractor
            )
            return BudgetResult((edited, used, capped, figures), joint)
        image = _to_float(frame)
        warm_key = (kind, round(strength, 4))
        if warm_key in self._warm:
            # Consecutive frames need nearly the same strength: try the last one first, and keep
            # it when it fits within WARM_TOLERANCE of the budget (one render, one measure).
            used, joint = self._warm[warm_key]
            edited = (
                self._render(image, kind, mask, used, distractor=distractor)
                if joint
                else self._render(image, kind, mask, strength, used, distractor=distractor)
            )
            figures = self._measure(frame, edited, mask, protect)
            excess = self._budget_excess(figures)
            if excess <= 0 and (used >= strength or excess > -WARM_TOLERANCE):
                return BudgetResult((edited, used, used < strength, figures), joint)
        small_frame, small_mask, small_protect = (
            _shrink(frame, factor),
            _shrink_any(mask, factor),
            _shrink_any(protect, factor),
        )
        small_distractor = None if distractor is None else _shrink(distractor, factor)
        _edited, used, capped, _figures, joint = self._search_budget(
            small_frame, kind, small_mask, small_protect, strength, distractor=small_distractor
        )
        # The search ran at the measuring size; the edit as rendered at full size is measured again on
        # every limit and stepped down until it holds (at worst to the product alone, then to no edit).
        for step in range(6):
            edited = (
                self._render(image, kind, mask, used, distractor=distractor)
                if joint
                else self._render(image, kind, mask, strength, used, distractor=distractor)
            )
            figures = self._measure(frame, edited, mask, protect)
            if self._budget_excess(figures) <= 0:
                self._warm[warm_key] = (used, joint)
                return BudgetResult((edited, used, capped, figures), joint, step)
            used, capped = 0.8 * used, True  # the full-resolution frame measured over: step down
        if not joint:
            edited = self._render(image, kind, mask, strength, 0.0, distractor=distractor)
            figures = self._measure(frame, edited, mask, protect)
            if self._budget_excess(figures) <= 0:
                return BudgetResult((edited, 0.0, True, figures), False, 6)
        return BudgetResult((image.copy(), 0.0, True, self._measure(frame, image, mask, protect)), True, 7)

    def _search_budget(
        self,
        frame: np.ndarray,
        kind: str,
        mask: np.ndarray,
        protect: np.ndarray,
        strength: float,
        start: tuple[float, bool] | None = None,
        distractor: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, bool, BudgetMeasure, bool]:
        image = _to_float(frame)
        if start is not None and start[0] < strength:
            # a warm start (the previous frame's capped strength): kept when within WARM_TOLERANCE of the budget
            used, joint = start
            edited = (
                self._render(image, kind, mask, used, distractor=distractor)
                if joint
                else self._render(image, kind, mask, strength, used, distractor=distractor)
            )
            figures = self._measure(frame, edited, mask, protect)
            excess = self._budget_excess(figures)
            if -WARM_TOLERANCE < excess <= 0:
                return edited, used, True, figures, joint
        edited = self._render(image, kind, mask, strength, distractor=distractor)
        figures = self._measure(frame, edited, mask, protect)
        over = self._budget_excess(figures)
        if over <= 0:
            return edited, strength, False, figures, False
        # The budget covers the background: keep the product's edit at the requested strength and
        # search the background's. Only if the product's own feathered edge already exceeds the
        # budget are both scaled together.
        product_only = self._render(image, kind, mask, strength, 0.0, distractor=distractor)
        product_figures = self._measure(frame, product_only, mask, protect)
        product_excess = self._budget_excess(product_figures)
        joint = product_excess > 0

        def render(background: float) -> np.ndarray:
            return (
                self._render(image, kind, mask, background, distractor=distractor)
                if joint
                else self._render(image, kind, mask, strength, background, distractor=distractor)
            )

        # Monotone search for the largest strength within the budget: regula falsi on the excess
        # (close to linear in strength), keeping a bracket [within, over]; every candidate tried
        # is measured at full resolution, and only a candidate within the budget is ever returned.
        if joint:
            low, low_excess = 0.0, -1.0
            best = (image.copy(), 0.0, self._measure(frame, image, mask, protect))
        else:
            low, low_excess = 0.0, product_excess
            best = (product_only, 0.0, product_figures)
        high, high_excess = strength, over
        for _ in range(self.settings.budget_steps):
            # The local limits jump (a share over a threshold): the excess above 0 is compressed by a
            # log, and every guess keeps at least a fifth of the bracket on each side.
            guess = low + (high - low) * (-low_excess) / (float(np.log1p(high_excess)) - low_excess)
            guess = float(np.clip(guess, low + 0.2 * (high - low), high - 0.2 * (high - low)))
            candidate = render(guess)
            cand_figures = self._measure(frame, candidate, mask, protect)
            excess = self._budget_excess(cand_figures)
            if excess <= 0:
                low, low_excess, best = guess, excess, (candidate, guess, cand_figures)
                if excess > -0.03:  # within 3 % of the budget: the largest strength, up to noise
                    break
            else:
                high, high_excess = guess, excess
        return best[0], best[1], True, best[2], joint

    def placebo_shift(
        self,
        frame: np.ndarray,
        mask: np.ndarray,
        protect: np.ndarray,
        weight: np.ndarray,
        direction: np.ndarray,
        target_delta_e: float,
    ) -> float:
        """Shift whose mean CIEDE2000 outside ``mask OR protect`` matches ``target_delta_e`` (bisection)."""
        if target_delta_e <= 0:
            return 0.0
        image = _to_float(frame)

        def magnitude(shift: float) -> float:
            return self._measure(frame, self.placebo_image(image, weight, shift, direction), mask, protect).delta_e

        # Mean CIEDE2000 grows almost linearly with a uniform chroma shift: a few secant steps
        # from the origin land within 2 % of the target (bounded to [0, placebo_max_shift]).
        top = self.settings.placebo_max_shift
        # The previous frame's shift per unit of target is the first guess (consecutive frames are alike).
        ratio = self._warm.get(("placebo_shift_per_delta_e", 0.0), (2.0, False))[0]
        shift, value = min(top, ratio * target_delta_e), 0.0
        for _ in range(4):
            value = magnitude(shift)
            if value <= 0 or abs(value - target_delta_e) <= 0.02 * target_delta_e:
                break
            shift = float(np.clip(shift * target_delta_e / value, 0.0, top))
        if shift > 0:
            self._warm[("placebo_shift_per_delta_e", 0.0)] = (shift / target_delta_e, False)
        for _ in range(10):  # the matched magnitude, but never over a local limit: step down until within
            figures = self._measure(frame, self.placebo_image(image, weight, shift, direction), mask, protect)
            if self._budget_excess(figures) <= 0:
                break
            shift *= 0.93
        return shift

    # -- the KeyframeEditor contract ----------------------------------------------------------------
    def edit_with_report(self, request: KeyframeEditRequest) -> tuple[np.ndarray, EditReport]:
        """Edited RGB uint8 frame and what was done; pixels outside ``allowed`` or inside ``protect`` are the input's."""
        frame = np.asarray(request.frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"salience editor: frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        mask = np.asarray(request.mask, dtype=bool)
        allowed = np.asarray(request.allowed, dtype=bool)
        protect_in = getattr(request, "protect", None)
        protect = np.zeros(mask.shape, bool) if protect_in is None else np.asarray(protect_in, dtype=bool)
        for name, array in (("mask", mask), ("allowed", allowed), ("protect", protect)):
            if array.shape != frame.shape[:2]:
                raise ValueError(f"salience editor: {name} {array.shape} does not match frame {frame.shape[:2]}")
        kind = request.kind
        if kind not in ("identity", "boost", "reduce", "placebo"):
            raise ValueError(f"salience editor: unknown edit kind {kind!r}")
        requested = float(np.clip(request.strength, 0.0, 1.0)) * self.settings.max_strength
        image = _to_float(frame)
        product_mask = mask & ~protect
        if kind == "identity" or not product_mask.any() or requested <= 0.0:
            # the float round trip of a strength-0 edit returns the frame exactly: skip it
            return frame.copy(), EditReport(kind, requested, 0.0, False, 1.0, 0.0, "no edit")
        distractor = self.distractor_weight(getattr(request, "attention", None), product_mask)
        if kind in ("boost", "reduce"):
            result = self.within_budget(frame, kind, product_mask, protect, requested, distractor)
            edited, used, capped, figures = result
            capped_part = "product and background" if getattr(result, "joint", False) else "background"
            reason = (
                f"{capped_part} capped at strength {used:.3f} of {requested:.3f} by the budget"
                if capped
                else "within budget"
            )
            stepped = int(getattr(result, "stepped_down", 0))
            if stepped:
                reason += f" (stepped down {stepped}x by the full-size recheck)"
            report = EditReport(kind, requested, used, capped, figures.ssim, figures.delta_e, reason)
        else:
            weight = self.placebo_weight(mask, allowed & ~protect)
            # The magnitude to match is the boost as delivered: after the full-size recheck's step-downs
            # (the same search the boost of this frame ran, so it comes from the cache).
            _boost, used, capped, boost_figures = self.within_budget(
                frame, "boost", product_mask, protect, requested, distractor
            )
            factor = downsample_factor(frame.shape)
            if factor == 1:
                direction = self.placebo_direction(image, mask)
                shift = self.placebo_shift(frame, mask, protect, weight, direction, boost_figures.delta_e)
                edited = self.placebo_image(image, weight, shift, direction)
            else:
                # Large frame: the direction and the shift are found at the budget's measuring
                # resolution; the grade is applied once at full size.
                small_frame, small_mask, small_protect = (
                    _shrink(frame, factor),
                    _shrink_any(mask, factor),
                    _shrink_any(protect, factor),
                )
                direction = self.placebo_direction(_to_float(small_frame), small_mask)
                shift = self.placebo_shift(
                    small_frame, small_mask, small_protect, _shrink(weight, factor), direction, boost_figures.delta_e
                )
                edited = self.placebo_image_large(image, weight, shift, direction)
            figures = self._measure(frame, edited, mask, protect)
            report = EditReport(
                kind,
                requested,
                used,
                capped,
                figures.ssim,
                figures.delta_e,
                f"colour grade of {shift:.2f} a*b* units matching the boost's mean CIEDE2000 {boost_figures.delta_e:.2f}",
            )
        return restore(_to_uint8(edited), frame, ~allowed | protect), report

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        """Edited RGB uint8 frame (see :meth:`edit_with_report`)."""
        return self.edit_with_report(request)[0]


class BudgetResult(tuple):  # type: ignore[type-arg]
    """``(edited, background strength used, capped?, budget measure)`` of a budgeted edit; ``joint`` says the
    product's own edit was scaled with the background (its product budget, or its edge, needed it)."""

    joint: bool
    stepped_down: int  # how many times the full-size recheck stepped the strength down (large frames)

    def __new__(cls, items: tuple[Any, ...], joint: bool, stepped_down: int = 0) -> BudgetResult:
        result = super().__new__(cls, items)
        result.joint, result.stepped_down = joint, stepped_down
        return result


def _blend(image: np.ndarray, edited: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """``image + weight (edited - image)`` per pixel (``edited`` itself when ``weight`` is None)."""
    if weight is None:
        return edited
    return image + weight[..., None] * (edited - image)


def _shrink(frame: np.ndarray, factor: int) -> np.ndarray:
    """``frame`` area-averaged by ``factor``, as :func:`align_core.measurement.perceptual_budget.measure` sees it."""
    height, width = frame.shape[0] // factor, frame.shape[1] // factor
    return cv2.resize(frame[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA)


def _shrink_any(region: np.ndarray, factor: int) -> np.ndarray:
    """A block is in the shrunk region when any of its pixels is (the budget measures only blocks wholly outside)."""
    return _shrink(region.astype(np.float32), factor) > 0


def _to_float(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB as float32 in [0, 1], in one pass (bit-identical to ``frame.astype(np.float32) / 255``)."""
    return np.divide(frame, np.float32(255.0), dtype=np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * np.float32(255.0)), 0, 255).astype(np.uint8)
