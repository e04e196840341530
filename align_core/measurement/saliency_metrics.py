"""Saliency evaluation metrics with the MIT saliency benchmark definitions.

References: Bylinskii, Judd, Oliva, Torralba, Durand, "What do different evaluation metrics
tell us about saliency models?", IEEE TPAMI 41(3), 2019, and the MIT/Tuebingen Saliency
Benchmark code (``saliency.mit.edu``). The attention stage is only as trustworthy as the
numbers that measure it, so these follow the published definitions exactly; the one deliberate
difference is AUC-Judd, which groups tied saliency values instead of adding random jitter, so
the result is deterministic (it equals the jittered value in expectation up to tie order).

Conventions: a *saliency map* is any real ``(H, W)`` array (higher = more attention); a
*fixation map* is a binary ``(H, W)`` array with the fixated pixels set; a *fixation density*
is a non-negative ``(H, W)`` array such as :func:`blur_fixations` of a fixation map.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from align_core.measurement.image_metrics import centre_prior

__all__ = [
    "auc_judd",
    "blur_fixations",
    "cc",
    "centre_bias_map",
    "fixation_map_from_points",
    "kld",
    "load_nus_image",
    "nss",
    "sim",
]

# MATLAB's eps, as in the MIT benchmark code for KLD.
_EPS = 2.220446049250313e-16


def _as_map(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _same_shape(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} shape {a.shape} differs from {b_name} shape {b.shape}; resize first")


def _fixation_mask(fixation_map: np.ndarray) -> np.ndarray:
    fixations = np.asarray(fixation_map)
    if fixations.ndim != 2:
        raise ValueError(f"fixation map must be a 2-D (H, W) array, got shape {fixations.shape}")
    mask = fixations > 0
    if not mask.any():
        raise ValueError("fixation map has no fixated pixel; the metric is undefined")
    return mask


def nss(saliency_map: np.ndarray, fixation_map: np.ndarray) -> float:
    """Normalized Scanpath Saliency (Peters et al. 2005; Bylinskii et al. 2019, sec. 3.2.1).

    The saliency map is standardised to zero mean and unit (population) standard deviation and
    averaged over fixated pixels: how many standard deviations above the map's mean the viewers
    looked. A constant map scores 0.
    """
    saliency = _as_map(saliency_map, "saliency map")
    mask = _fixation_mask(fixation_map)
    _same_shape(saliency, mask, "saliency map", "fixation map")
    std = saliency.std()
    if std == 0:
        return 0.0
    return float(((saliency - saliency.mean()) / std)[mask].mean())


def cc(saliency_map: np.ndarray, fixation_density: np.ndarray) -> float:
    """Pearson linear correlation coefficient between two maps (Bylinskii et al. 2019, 3.2.3).

    Symmetric; 1 for maps equal up to a positive affine transform. A constant map has no
    defined correlation and scores 0 (the MIT code returns NaN; 0 keeps means finite).
    """
    a = _as_map(saliency_map, "saliency map")
    b = _as_map(fixation_density, "fixation density")
    _same_shape(a, b, "saliency map", "fixation density")
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator == 0:
        return 0.0
    return float((a * b).sum() / denominator)


def kld(saliency_map: np.ndarray, fixation_density: np.ndarray) -> float:
    """Kullback-Leibler divergence KL(fixations || saliency) (Bylinskii et al. 2019, 3.2.4).

    Both maps are normalised to sum 1; ``sum(Q * log(eps + Q / (P + eps)))`` with MATLAB's eps,
    exactly as the MIT benchmark computes it. 0 for identical distributions; lower is better.
    """
    p = _as_map(saliency_map, "saliency map")
    q = _as_map(fixation_density, "fixation density")
    _same_shape(p, q, "saliency map", "fixation density")
    if p.min() < 0 or q.min() < 0:
        raise ValueError("KLD needs non-negative maps (distributions)")
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("KLD needs maps with positive mass")
    p = p / p.sum()
    q = q / q.sum()
    return float((q * np.log(_EPS + q / (p + _EPS))).sum())


def sim(saliency_map: np.ndarray, fixation_density: np.ndarray) -> float:
    """Similarity / histogram intersection (Judd et al. 2012; Bylinskii et al. 2019, 3.2.5).

    Each map is min-max normalised to [0, 1] then to sum 1, as in the MIT code, and SIM is the
    sum of the pixel-wise minimum: 1 for identical distributions, 0 for disjoint ones.
    """
    a = _as_map(saliency_map, "saliency map")
    b = _as_map(fixation_density, "fixation density")
    _same_shape(a, b, "saliency map", "fixation density")

    def _distribution(m: np.ndarray) -> np.ndarray:
        span = m.max() - m.min()
        m = (m - m.min()) / span if span > 0 else np.ones_like(m)
        return m / m.sum()

    return float(np.minimum(_distribution(a), _distribution(b)).sum())


def auc_judd(saliency_map: np.ndarray, fixation_map: np.ndarray) -> float:
    """AUC-Judd (Judd et al. 2009; Bylinskii et al. 2019, sec. 3.2.2).

    Thresholds are the saliency values at fixated pixels; the true-positive rate is the fraction
    of fixated pixels at or above a threshold, the false-positive rate the fraction of all other
    pixels at or above it; the ROC from (0, 0) to (1, 1) is integrated with the trapezoid rule.
    Equal saliency values are grouped into one threshold (deterministic) where the MIT code adds
    a 1e-7 random jitter; a map that is 1 on every fixation and 0 elsewhere scores exactly 1.
    """
    saliency = _as_map(saliency_map, "saliency map")
    mask = _fixation_mask(fixation_map)
    _same_shape(saliency, mask, "saliency map", "fixation map")
    n_fix = int(mask.sum())
    n_other = mask.size - n_fix
    if n_other == 0:
        raise ValueError("every pixel is fixated; AUC-Judd is undefined")
    thresholds = np.unique(saliency[mask])[::-1]  # descending
    fix_sorted = np.sort(saliency[mask])
    other_sorted = np.sort(saliency[~mask])
    # Count of values >= t for each threshold t, via sorted search (no loop over thresholds).
    tp = (n_fix - np.searchsorted(fix_sorted, thresholds, side="left")) / n_fix
    fp = (n_other - np.searchsorted(other_sorted, thresholds, side="left")) / n_other
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([[0.0], fp, [1.0]])
    return float(np.trapezoid(tp, fp))


def centre_bias_map(h: int, w: int, sigma_frac: float = 0.3) -> np.ndarray:
    """Anisotropic Gaussian centred in an ``h x w`` frame, peak 1 (float32).

    Viewers look at the centre of a screen regardless of content; this is the baseline every
    attention model must beat. Sigma is ``sigma_frac`` of the width (x) and of the height (y).
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"centre bias map needs a positive size, got {h}x{w}")
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be positive, got {sigma_frac}")
    return centre_prior(h, w, sigma_frac, dtype=np.float64)


def blur_fixations(fixation_map: np.ndarray, sigma_frac: float = 0.03) -> np.ndarray:
    """Continuous fixation density: a binary fixation map blurred by a Gaussian, peak 1.

    Sigma is ``sigma_frac`` of the larger side (about one degree of visual angle in the usual
    eye-tracking setups), the convention DESIGN.md fixes for CC, KLD and SIM.
    """
    mask = _fixation_mask(fixation_map).astype(np.float32)
    if sigma_frac <= 0:
        raise ValueError(f"sigma_frac must be positive, got {sigma_frac}")
    sigma = sigma_frac * max(mask.shape)
    density = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    peak = float(density.max())
    return (density / peak).astype(np.float32) if peak > 0 else density


def fixation_map_from_points(points_xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Binary ``(height, width)`` fixation map from ``(n, 2)`` pixel coordinates ``(x, y)``.

    Coordinates are rounded to the nearest pixel; points outside the image are an error rather
    than silently clipped, since they mean the coordinates and the image disagree.
    """
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    cols = np.rint(points[:, 0]).astype(np.int64)
    rows = np.rint(points[:, 1]).astype(np.int64)
    outside = (cols < 0) | (cols >= width) | (rows < 0) | (rows >= height)
    if outside.any():
        bad = points[outside][0]
        raise ValueError(f"{int(outside.sum())} fixation(s) outside the {width}x{height} image, e.g. {bad.tolist()}")
    fixation = np.zeros((height, width), dtype=bool)
    fixation[rows, cols] = True
    return fixation


def load_nus_image(root: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, boolean fixation map) of image ``index`` of a NUS-style data set at ``root``
    (``stimuli/NNN.jpg`` + ``fixation_maps/NNN.png``), checked for matching sizes."""
    name = f"{index:03d}"
    image = cv2.imread(str(Path(root) / "stimuli" / f"{name}.jpg"), cv2.IMREAD_COLOR)
    fixations = cv2.imread(str(Path(root) / "fixation_maps" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    if image is None or fixations is None:
        raise FileNotFoundError(f"{root}: stimulus or fixation map {name} missing")
    if image.shape[:2] != fixations.shape:
        raise ValueError(f"{root}: {name} stimulus {image.shape[:2]} and fixation map {fixations.shape} differ")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), fixations > 0
