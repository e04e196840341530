"""The model-free salience editor: moves attention with parametric image operations.

Attention goes where contrast, colour and detail are. To RAISE the product's share of it the
editor blurs, desaturates and flattens the contrast of the background (outside a feathered
product mask) and slightly enriches the product; to LOWER it, the product is camouflaged (blurred
and pulled towards the colour of the background around it, so its texture, outline and colour
contrast fade) and the background is sharpened and saturated, most in a ring about 0.3 of the
short side outside the product. The ring sits there because the checking scorer mixes a strong
centre prior (0.7) into patch ratings over 3- and 7-degree disks: with the product at the centre,
only content that is NOT inside the product's own 7-degree patches can pull the map's peak off it
(measured on the demo: texture within 20 px of the product raised its share, at 40-80 px lowered it). PLACEBO rotates the
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

EDITOR_VERSION = "2"  # 2: camouflage reduce with a ring of enrichment; every frame edited by the renderer

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
    reduce_blur_sigma: float = 0.02  # product blur at full strength (reduce)
    camouflage: float = 0.9  # share of the product's difference from the surrounding background removed (reduce)
    camouflage_reach: float = 0.12  # how far the background fill under the product looks (Gaussian sigma)
    reduce_desaturate: float = 0.5  # chroma removed from the camouflaged product (reduce)
    enrich: float = 0.6  # background saturation gain and unsharp amount everywhere (reduce)
    ring_enrich: float = 4.0  # extra unsharp amount next to the product (reduce)
    ring_distance: float = 0.3  # the ring peaks this far outside the mask (inside a 7-degree patch it would feed the product's own score)
    ring_width: float = 0.15  # Gaussian width of that ring
    detail_sigma: float = 0.02  # scale of the detail the unsharp mask amplifies
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
    # A pure, cheap function of (frame, mask, strength): the renderer edits every frame with its own
    # mask instead of carrying keyframe edits by optical flow, which loses blur/sharpen residuals
    # wherever the flow is off by a pixel (measured: a reduction kept ~1/3 of its keyframe effect).
    propagation = "every_frame"
    calibrates = True  # its effect on the measuring scorer is measured per video before rendering

    def __init__(self, max_strength: float = 1.0, **settings: float):
        self.settings = SalienceSettings(max_strength=float(max_strength), **settings)
        if not 0.0 <= self.settings.max_strength <= 1.0:
            raise ValueError(f"max_strength must be in [0, 1], got {max_strength}")

    def lineage(self) -> dict[str, Any]:
        return {"editor": self.name, "version": EDITOR_VERSION, "model": None, "weights": None, "settings": asdict(self.settings)}

    # -- geometry ---------------------------------------------------------------------------------
    def _scale(self, shape: tuple[int, ...]) -> float:
        return float(min(shape[0], shape[1]))

    def _weights(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(soft product weight, distance in px outside the mask; 0 inside)."""
        width = max(1.0, self.settings.feather * self._scale(mask.shape))
        mask_u8 = mask.astype(np.uint8)
        inside = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3)
        outside = cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 3)
        signed = np.where(mask, inside, -outside).astype(np.float32)  # > 0 inside
        return np.clip(0.5 + signed / width, 0.0, 1.0), outside.astype(np.float32)

    def product_weight(self, mask: np.ndarray) -> np.ndarray:
        """Soft product weight in [0, 1]: 1 inside, 0 outside, a linear ramp across the edge."""
        return self._weights(mask)[0]

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

    def background_fill(self, image: np.ndarray, w_bg: np.ndarray) -> np.ndarray:
        """What the background looks like around (and, smoothly extended, under) the product.

        Normalised convolution at quarter resolution: ``blur(image * w_bg) / blur(w_bg)`` with a
        wide Gaussian, so every product pixel gets the colour of the background nearest it; where
        no background is within reach the frame's mean background colour is used.
        """
        height, width = image.shape[:2]
        small_size = (max(1, width // 4), max(1, height // 4))
        sigma = max(1.0, self.settings.camouflage_reach * self._scale(image.shape) / 4)
        img_s = cv2.resize(image * w_bg[..., None], small_size, interpolation=cv2.INTER_AREA)
        w_s = cv2.resize(w_bg, small_size, interpolation=cv2.INTER_AREA)
        num = cv2.GaussianBlur(img_s, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        den = cv2.GaussianBlur(w_s, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        total = float(w_bg.sum())
        fallback = (image * w_bg[..., None]).reshape(-1, 3).sum(axis=0) / total if total > 0 else image.reshape(-1, 3).mean(axis=0)
        fill = np.where(den[..., None] > 1e-3, num / np.maximum(den, 1e-3)[..., None], fallback.astype(np.float32))
        return cv2.resize(fill.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)

    def reduce_image(self, image: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
        """Float [0,1] frame with the product camouflaged and the background around it enriched.

        Product: blurred, then pulled towards the surrounding background's colour (its
        normalised-convolution fill), so its texture, outline and colour contrast fade into the
        scene. Background: chroma and local contrast (unsharp detail) raised everywhere, and
        more within ``ring_width`` of the product, where the eye would otherwise land on it.
        """
        s, cfg = strength, self.settings
        scale = self._scale(image.shape)
        w_prod, outside = self._weights(mask)
        w_bg = 1.0 - w_prod
        product = _blur(image, s * cfg.reduce_blur_sigma * scale)
        fill = self.background_fill(image, w_bg)
        product = fill + (1.0 - s * cfg.camouflage) * (product - fill)
        prod_luma = _luma(product)
        product = _saturate(product, prod_luma, 1.0 - s * cfg.reduce_desaturate)
        ring = np.exp(-0.5 * ((outside - cfg.ring_distance * scale) / max(1.0, cfg.ring_width * scale)) ** 2).astype(np.float32)
        detail = image - _blur(image, cfg.detail_sigma * scale)
        luma = _luma(image)
        gain = (s * (cfg.enrich + cfg.ring_enrich * ring))[..., None]
        background = _saturate(image, luma, 1.0 + s * cfg.enrich) + gain * detail
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
