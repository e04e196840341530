"""The model-free salience editor: moves attention with parametric image operations.

Attention goes where contrast, colour and detail are. To RAISE the product's share of it the
editor blurs, desaturates and flattens the contrast of the background (outside a feathered
product mask) and slightly enriches the product; to LOWER it, the reverse: the product is
blurred, desaturated and flattened, the background sharpened and saturated. PLACEBO rotates the
background's hue and shifts its colour temperature in YCbCr, which keeps luma (and so local
luma contrast and detail) exactly, at an edit magnitude matched to the boost of the same
strength, strictly outside the (dilated) mask. IDENTITY runs the same float conversion, feather
and composite with strength 0, which returns the frame unchanged.

Everything is vectorised numpy/OpenCV, deterministic, and sized relative to the frame, so one
setting works at any resolution. A frame whose product is absent (empty mask) is returned
unchanged for every kind: there is no product share to move, and a placebo should not edit where
its matched boost does not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from align_core.editing.base import KeyframeEditRequest

EDITOR_VERSION = "1"

# BT.601 luma weights: Y is exactly preserved by the placebo's chroma rotation.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class SalienceSettings:
    """Magnitudes at strength 1; lengths are fractions of the frame's shorter side."""

    max_strength: float = 1.0
    feather: float = 0.03  # width of the soft mask edge
    blur_sigma: float = 0.02  # background blur at full strength (boost)
    desaturate: float = 0.9  # share of chroma removed from the background (boost)
    flatten: float = 0.6  # share of contrast removed from the background (boost)
    product_enhance: float = 0.15  # saturation/contrast gain on the product (boost)
    reduce_blur_sigma: float = 0.012  # product blur at full strength (reduce)
    reduce_desaturate: float = 0.8
    reduce_flatten: float = 0.5
    enrich: float = 0.6  # background saturation gain and unsharp amount (reduce)
    placebo_hue_deg: float = 90.0  # chroma rotation at placebo level 1
    placebo_temperature: float = 0.12  # Cr up / Cb down at placebo level 1 (units of [0, 1] RGB)
    placebo_margin: float = 0.02  # the placebo stays this far outside the mask


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ _LUMA


def _saturate(image: np.ndarray, luma: np.ndarray, gain: float) -> np.ndarray:
    """Scale chroma around luma: gain 0 is grey, 1 unchanged, >1 more colourful."""
    return luma[..., None] + gain * (image - luma[..., None])


def _contrast(image: np.ndarray, centre: float, gain: float) -> np.ndarray:
    return centre + gain * (image - centre)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _weighted_mean(values: np.ndarray, weight: np.ndarray) -> float:
    total = float(weight.sum())
    return float((values * weight).sum() / total) if total > 0 else float(values.mean())


def _rotate_chroma(image: np.ndarray, degrees: float, temperature: float) -> np.ndarray:
    """Rotate (Cb, Cr) by ``degrees`` and shift towards warm by ``temperature``, keeping Y exactly.

    The change is a luma-neutral RGB offset, scaled down per pixel just enough to stay inside
    [0, 1]; so nothing clips, and luma (hence every luma edge and texture) is untouched.
    """
    y = _luma(image)
    cb = (image[..., 2] - y) * 0.564
    cr = (image[..., 0] - y) * 0.713
    theta = np.deg2rad(degrees)
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    cb2 = c * cb - s * cr - np.float32(temperature)
    cr2 = s * cb + c * cr + np.float32(temperature)
    r = y + 1.403 * cr2
    b = y + 1.773 * cb2
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    delta = np.stack([r, g, b], axis=-1) - image
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(delta > 0, (1.0 - image) / delta, np.where(delta < 0, -image / delta, np.inf))
    scale = np.clip(room.min(axis=-1), 0.0, 1.0).astype(np.float32)
    return image + scale[..., None] * delta


class SalienceEditor:
    """Keyframe editor that raises or lowers the product's share of attention without a model."""

    name = "salience"

    def __init__(self, max_strength: float = 1.0, **settings: float):
        self.settings = SalienceSettings(max_strength=float(max_strength), **settings)
        if not 0.0 <= self.settings.max_strength <= 1.0:
            raise ValueError(f"max_strength must be in [0, 1], got {max_strength}")

    def lineage(self) -> dict[str, Any]:
        return {"editor": self.name, "version": EDITOR_VERSION, "model": None, "weights": None, "settings": asdict(self.settings)}

    # -- geometry ---------------------------------------------------------------------------------
    def _scale(self, shape: tuple[int, ...]) -> float:
        return float(min(shape[0], shape[1]))

    def product_weight(self, mask: np.ndarray) -> np.ndarray:
        """Soft product weight in [0, 1]: 1 inside, 0 outside, a linear ramp across the edge."""
        width = max(1.0, self.settings.feather * self._scale(mask.shape))
        mask_u8 = mask.astype(np.uint8)
        inside = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3)
        outside = cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 3)
        signed = np.where(mask, inside, -outside).astype(np.float32)  # > 0 inside
        return np.clip(0.5 + signed / width, 0.0, 1.0)

    def placebo_weight(self, mask: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """Ramp from 0 at the forbidden region (dilated mask, disallowed pixels) to 1 a feather away."""
        scale = self._scale(mask.shape)
        margin = int(round(self.settings.placebo_margin * scale))
        forbidden = mask.astype(np.uint8)
        if margin > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
            forbidden = cv2.dilate(forbidden, kernel)
        free = ((forbidden == 0) & allowed).astype(np.uint8)
        distance = cv2.distanceTransform(free, cv2.DIST_L2, 3)
        width = max(1.0, self.settings.feather * scale)
        return np.clip(distance / width, 0.0, 1.0).astype(np.float32)

    # -- operations -------------------------------------------------------------------------------
    def boost_image(self, image: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
        """Float [0,1] frame with the background muted and the product enriched at ``strength``."""
        s, cfg = strength, self.settings
        w_prod = self.product_weight(mask)
        w_bg = 1.0 - w_prod
        luma = _luma(image)
        background = _blur(image, s * cfg.blur_sigma * self._scale(image.shape))
        bg_luma = _luma(background)
        background = _saturate(background, bg_luma, 1.0 - s * cfg.desaturate)
        background = _contrast(background, _weighted_mean(bg_luma, w_bg), 1.0 - s * cfg.flatten)
        gain = 1.0 + s * cfg.product_enhance
        product = _contrast(_saturate(image, luma, gain), _weighted_mean(luma, w_prod), gain)
        return w_prod[..., None] * product + w_bg[..., None] * background

    def reduce_image(self, image: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
        """Float [0,1] frame with the product muted and the background enriched at ``strength``."""
        s, cfg = strength, self.settings
        w_prod = self.product_weight(mask)
        w_bg = 1.0 - w_prod
        product = _blur(image, s * cfg.reduce_blur_sigma * self._scale(image.shape))
        prod_luma = _luma(product)
        product = _saturate(product, prod_luma, 1.0 - s * cfg.reduce_desaturate)
        product = _contrast(product, _weighted_mean(prod_luma, w_prod), 1.0 - s * cfg.reduce_flatten)
        detail = image - _blur(image, 0.01 * self._scale(image.shape))
        luma = _luma(image)
        background = _saturate(image, luma, 1.0 + s * cfg.enrich) + s * cfg.enrich * detail
        background = _contrast(background, _weighted_mean(luma, w_bg), 1.0 + 0.5 * s * cfg.enrich)
        return w_prod[..., None] * product + w_bg[..., None] * background

    def placebo_image(self, image: np.ndarray, weight: np.ndarray, level: float) -> np.ndarray:
        cfg = self.settings
        shifted = _rotate_chroma(image, level * cfg.placebo_hue_deg, level * cfg.placebo_temperature)
        return image + weight[..., None] * (shifted - image)

    def placebo_level(self, image: np.ndarray, mask: np.ndarray, weight: np.ndarray, strength: float) -> float:
        """Placebo level whose mean |change| matches the boost's at ``strength`` (bisection, 1/4 scale)."""
        small = cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 8:
            small = image
        small_mask = cv2.resize(mask.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        small_weight = cv2.resize(weight, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        target = float(np.abs(np.clip(self.boost_image(small, small_mask, strength), 0, 1) - small).mean())
        if target <= 0:
            return 0.0

        def magnitude(level: float) -> float:
            return float(np.abs(np.clip(self.placebo_image(small, small_weight, level), 0, 1) - small).mean())

        low, high = 0.0, 1.0
        if magnitude(high) <= target:
            return high  # the background has too little room to change as much as the boost did
        for _ in range(12):
            middle = 0.5 * (low + high)
            if magnitude(middle) < target:
                low = middle
            else:
                high = middle
        return 0.5 * (low + high)

    # -- the KeyframeEditor contract ----------------------------------------------------------------
    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        """Edited RGB uint8 frame; pixels outside ``request.allowed`` are the original's."""
        frame = np.asarray(request.frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"salience editor: frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        mask = np.asarray(request.mask, dtype=bool)
        allowed = np.asarray(request.allowed, dtype=bool)
        if mask.shape != frame.shape[:2] or allowed.shape != frame.shape[:2]:
            raise ValueError(
                f"salience editor: mask {mask.shape} / allowed {allowed.shape} do not match frame {frame.shape[:2]}"
            )
        strength = float(np.clip(request.strength, 0.0, 1.0)) * self.settings.max_strength
        kind = request.kind
        if kind not in ("identity", "boost", "reduce", "placebo"):
            raise ValueError(f"salience editor: unknown edit kind {kind!r}")
        image = frame.astype(np.float32) / np.float32(255.0)
        if kind == "identity" or not mask.any() or strength <= 0.0:
            # Same conversion and composite path at zero strength: exactly the input frame.
            edited = image + self.product_weight(mask)[..., None] * np.float32(0.0)
        elif kind == "boost":
            edited = self.boost_image(image, mask, strength)
        elif kind == "reduce":
            edited = self.reduce_image(image, mask, strength)
        else:
            weight = self.placebo_weight(mask, allowed)
            edited = self.placebo_image(image, weight, self.placebo_level(image, mask, weight, strength))
        out = np.clip(np.rint(edited * np.float32(255.0)), 0, 255).astype(np.uint8)
        return np.where(allowed[..., None], out, frame)
