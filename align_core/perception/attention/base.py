"""The patch-scorer contract and the image operations every scorer shares."""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from align_core.perception.attention.geometry import disk_kernel

__all__ = [
    "PatchScorer",
    "check_frame",
    "disk_means_at",
    "minmax",
    "spectral_residual",
    "splat_patch_scores",
]


@runtime_checkable
class PatchScorer(Protocol):
    """Rates circular patches of a frame: higher means more likely to draw the eyes.

    ``frame`` is RGB ``uint8 (H, W, 3)`` at the working resolution, ``centres`` is ``(n, 2)``
    float ``(x, y)`` pixel coordinates and ``radius_px`` the patch radius in the same pixels.
    The result is ``float (n,)``, finite; only the relative order and spacing of scores within
    one frame and scale matter (the map is min-max normalised afterwards). ``frame_index`` is
    the frame's index in its video, for scorers that read per-frame data (``provided``).
    """

    name: str

    @property
    def scorer_id(self) -> str:
        """Identifies the scorer and its weights/parameters; stored with every map."""
        ...

    def score_patches(
        self, frame: np.ndarray, centres: np.ndarray, radius_px: float, *, frame_index: int | None = None
    ) -> np.ndarray: ...

    def metadata(self) -> dict[str, Any]:
        """JSON-safe description: which weights or data produced the scores, and what they are."""
        ...


def check_frame(frame: np.ndarray, what: str = "frame") -> np.ndarray:
    """Validate an RGB uint8 ``(H, W, 3)`` frame."""
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{what} must be RGB uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return array


def disk_means_at(values: np.ndarray, centres: np.ndarray, radius_px: float) -> np.ndarray:
    """Mean of a per-pixel map over the in-frame part of a disk around each centre.

    One convolution of the map with a disk kernel (OpenCV switches to a DFT for large kernels)
    divided by the convolution of an all-ones map, sampled at the rounded centres: the cost does
    not grow with the number of patches.
    """
    values = np.asarray(values, dtype=np.float32)
    kernel = disk_kernel(radius_px)
    sums = cv2.filter2D(values, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
    cols, rows = _centre_pixels(centres, values.shape)
    areas = _in_frame_areas(values.shape[:2], float(radius_px), rows, cols)
    return (sums[rows, cols] / areas).astype(np.float64)


def splat_patch_scores(scores: np.ndarray, centres: np.ndarray, radius_px: float, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel mean of the scores of every patch that covers the pixel.

    Scores are placed as impulses at the patch centres and convolved with the disk kernel
    (sum of covering scores); the same for unit impulses gives the coverage count. Pixels no
    patch covers are 0 (a grid from :func:`patch_grid` covers every pixel).
    """
    height, width = shape
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    cols, rows = _centre_pixels(centres, shape)
    impulses = np.zeros(shape, dtype=np.float64)
    np.add.at(impulses, (rows, cols), scores)
    kernel = disk_kernel(radius_px).astype(np.float64)
    sums = cv2.filter2D(impulses, cv2.CV_64F, kernel, borderType=cv2.BORDER_CONSTANT)
    covered, count = _patch_coverage((int(height), int(width)), float(radius_px), rows, cols)
    out = np.zeros(shape, dtype=np.float64)
    out[covered] = sums[covered] / count
    return out


# The parts of both convolutions that depend only on the frame size, the radius and the patch
# grid (the same for every frame of a video): computed once, not once per frame and scorer.
_GEOMETRY_CACHE: dict[tuple, tuple[np.ndarray, ...]] = {}
_GEOMETRY_CACHE_SIZE = 32


_GEOMETRY_LOCK = threading.Lock()


def _cached(key: tuple, compute) -> tuple[np.ndarray, ...]:
    found = _GEOMETRY_CACHE.get(key)
    if found is None:
        found = compute()
        for array in found:
            array.setflags(write=False)
        with _GEOMETRY_LOCK:
            if len(_GEOMETRY_CACHE) >= _GEOMETRY_CACHE_SIZE:
                _GEOMETRY_CACHE.pop(next(iter(_GEOMETRY_CACHE)), None)
            _GEOMETRY_CACHE[key] = found
    return found


def _in_frame_areas(shape: tuple[int, int], radius_px: float, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """In-frame pixel count of the disk around each centre (at least 1)."""

    def compute() -> tuple[np.ndarray]:
        ones = np.ones(shape, dtype=np.float32)
        areas = cv2.filter2D(ones, cv2.CV_32F, disk_kernel(radius_px), borderType=cv2.BORDER_CONSTANT)
        return (np.maximum(areas[rows, cols], 1.0),)

    return _cached(("areas", shape, radius_px, rows.tobytes(), cols.tobytes()), compute)[0]


def _patch_coverage(
    shape: tuple[int, int], radius_px: float, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels some patch covers, how many patches cover each of them) for patches at ``rows, cols``."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        counts = np.zeros(shape, dtype=np.float64)
        np.add.at(counts, (rows, cols), 1.0)
        kernel = disk_kernel(radius_px).astype(np.float64)
        coverage = cv2.filter2D(counts, cv2.CV_64F, kernel, borderType=cv2.BORDER_CONSTANT)
        covered = coverage > 0.5  # counts are integers; DFT round-off is far below 0.5
        return covered, np.rint(coverage[covered])

    return _cached(("coverage", shape, radius_px, rows.tobytes(), cols.tobytes()), compute)


def _centre_pixels(centres: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.rint(centres[:, 0]).astype(np.int64), 0, shape[1] - 1)
    rows = np.clip(np.rint(centres[:, 1]).astype(np.int64), 0, shape[0] - 1)
    return cols, rows


def spectral_residual(frame: np.ndarray, work_side: int = 64, blur_sigma_frac: float = 0.04) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007), ``float32 (H, W)`` in [0, 1].

    The log amplitude spectrum minus its 3x3 local mean keeps what is unexpected in the image;
    inverting it with the original phase and squaring highlights those regions. Computed on a
    ``work_side``-pixel long side as in the paper, blurred, and resized to the frame.
    """
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    scale = work_side / max(height, width)
    small = cv2.resize(
        grey, (max(4, round(width * scale)), max(4, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8).astype(np.float32)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sigma = max(0.5, blur_sigma_frac * max(small.shape))
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)
    saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    return minmax(saliency)


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (``float32``); a constant input gives zeros."""
    values = np.asarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)
