"""The image metrics every measurement shares: SSIM, PSNR and the centre-prior Gaussian.

One implementation of each. Where two callers have always computed one of them with different
arithmetic, the difference is an explicit, documented parameter, so each caller's warehouse
numbers stay bit-for-bit what they were:

- SSIM (Wang, Bovik, Sheikh, Simoncelli 2004: Gaussian 11x11 window, sigma 1.5, K1 0.01, K2
  0.03) on a grey image given by ``luma``. :mod:`~align_core.measurement.quality` compares
  0-255 frames on float64 BT.601 luma (:func:`bt601_luma`, ``data_range`` 255); the perceptual
  budget compares OpenCV's float32 grey of the [0, 1] image (``data_range`` 1, its own luma
  function). Both use the BT.601 weights, but the float32 grey differs from the float64 one in
  the last bits, so the budget keeps it.
- PSNR from a summed squared error (:func:`psnr_from_squared_error`) or from two arrays
  (:func:`psnr`). The stimulus checks take ``log10`` from :func:`math.log10`; quality's
  :func:`psnr` from :func:`numpy.log10`, which differs from it in the last bit on about 6 % of
  inputs; ``log10`` says which.
- The centre prior: a Gaussian of peak 1 centred in an ``height x width`` frame with sigma
  ``sigma_frac`` of the height (y) and of the width (x), as a map (:func:`centre_prior`; the
  independent saliency models compute it in float32, the saliency metrics' centre-bias baseline
  in float64: ``dtype``) or at patch centres (:func:`centre_prior_at`, float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

__all__ = [
    "SsimReference",
    "bt601_luma",
    "centre_prior",
    "centre_prior_at",
    "psnr",
    "psnr_from_squared_error",
    "ssim_map",
]

LumaFn = Callable[[np.ndarray], np.ndarray]

_BT601 = np.array([0.299, 0.587, 0.114])


def bt601_luma(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma in float64 on the frame's own scale; a 2-D frame is already grey."""
    frame = np.asarray(frame, dtype=np.float64)
    return frame if frame.ndim == 2 else frame @ _BT601


class SsimReference:
    """SSIM against one reference image: its local mean and variance are computed once and shared
    by every image compared with it (every variant against one original or baseline frame).

    ``luma`` turns an image into the float64 grey image SSIM compares (default :func:`bt601_luma`);
    ``data_range`` is that grey image's range (255 for 0-255 frames, 1 for [0, 1] images).
    """

    def __init__(
        self,
        reference: np.ndarray,
        sigma: float = 1.5,
        data_range: float = 255.0,
        k1: float = 0.01,
        k2: float = 0.03,
        *,
        luma: LumaFn = bt601_luma,
    ) -> None:
        self.sigma, self.luma = sigma, luma
        self.c1, self.c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
        self.x = luma(reference)
        self.mu_x = self._smooth(self.x)
        self.var_x = self._smooth(self.x * self.x) - self.mu_x**2

    def _smooth(self, image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), self.sigma, borderType=cv2.BORDER_REFLECT)

    def map(self, other: np.ndarray) -> np.ndarray:
        """Per-pixel SSIM of ``other`` against the reference."""
        y = self.luma(other)
        if y.shape != self.x.shape:
            raise ValueError(f"SSIM needs equal shapes, got {self.x.shape} and {y.shape}")
        mu_x, mu_y = self.mu_x, self._smooth(y)
        var_y = self._smooth(y * y) - mu_y**2
        cov = self._smooth(self.x * y) - mu_x * mu_y
        c1, c2 = self.c1, self.c2
        return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (self.var_x + var_y + c2))


def ssim_map(
    a: np.ndarray,
    b: np.ndarray,
    sigma: float = 1.5,
    data_range: float = 255.0,
    k1: float = 0.01,
    k2: float = 0.03,
    *,
    luma: LumaFn = bt601_luma,
) -> np.ndarray:
    """Per-pixel SSIM of two images (compared on ``luma``), Gaussian 11x11 window."""
    return SsimReference(a, sigma, data_range, k1, k2, luma=luma).map(b)


def psnr_from_squared_error(
    squared_error: float, values: int, data_range: float = 255.0, *, log10: Callable[[float], float] = math.log10
) -> float:
    """PSNR in dB of ``values`` values whose squared errors sum to ``squared_error``.

    inf when the error is 0, NaN when nothing was measured. ``log10``: :func:`math.log10`
    (the stimulus checks) or :func:`numpy.log10` (quality's :func:`psnr`); see the module doc.
    """
    if values == 0:
        return float("nan")
    mse = squared_error / values
    return float("inf") if mse == 0 else float(10.0 * log10(data_range**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, data_range: float = 255.0) -> float:
    """PSNR in dB over ``region`` (all channels); inf when identical, NaN for an empty region."""
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2
    if region is not None:
        region = np.asarray(region, dtype=bool)
        if not region.any():
            return float("nan")
        diff = diff[region]
    return psnr_from_squared_error(float(diff.sum()), diff.size, data_range, log10=np.log10)


def _centred(coordinates: np.ndarray, size: int, sigma_frac: float) -> np.ndarray:
    """Distance from the frame's centre in sigmas (``sigma_frac * size``), in the coordinates' dtype."""
    return (coordinates - (size - 1) / 2.0) / (sigma_frac * size)


def _gaussian(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (dy * dy + dx * dx))


def centre_prior(height: int, width: int, sigma_frac: float = 0.3, *, dtype: type = np.float64) -> np.ndarray:
    """The centre prior over an ``height x width`` frame, peak 1, as float32.

    ``dtype`` is the arithmetic's precision: float64 (the saliency metrics' centre-bias baseline)
    or float32 (the independent saliency models); the two differ in the last float32 bit.
    """
    ys = _centred(np.arange(height, dtype=dtype), height, sigma_frac)
    xs = _centred(np.arange(width, dtype=dtype), width, sigma_frac)
    return _gaussian(ys[:, None], xs[None, :]).astype(np.float32)


def centre_prior_at(centres: np.ndarray, height: int, width: int, sigma_frac: float) -> np.ndarray:
    """The centre prior (peak 1, float64) at ``(x, y)`` centres of an ``height x width`` frame."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    dx = _centred(centres[:, 0], width, sigma_frac)
    dy = _centred(centres[:, 1], height, sigma_frac)
    return _gaussian(dy, dx)
