"""Region geometry shared by the renderer and the editors, cheap on large frames."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "allowed_region",
    "bounding_box",
    "dilate_ellipse",
    "guarded_protect",
    "restore",
]


def bounding_box(region: np.ndarray, margin: int = 0) -> tuple[slice, slice] | None:
    """Rows and columns where ``region`` is non-zero, grown by ``margin`` and clipped (None when empty)."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    height, width = region.shape[:2]
    return (
        slice(max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(width, cols[-1] + 1 + margin)),
    )


def dilate_ellipse(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (bool) dilated by an elliptical disc of ``radius`` px, computed on its bounding box only.

    The same pixels as ``cv2.dilate`` with the disc over the whole frame; a product covering a
    tenth of a 1080x1920 frame costs a tenth as much.
    """
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return mask.copy()
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask, radius)
    if box is None:
        return out
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out[box] = (
        cv2.dilate(
            np.ascontiguousarray(mask[box]).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
        )
        > 0
    )
    return out


def restore(out: np.ndarray, source: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``out[region] = source[region]`` in place, touching only ``region``'s bounding box; returns ``out``.

    The same pixels as ``np.where(region[..., None], source, out)`` without a new full-size
    frame (the regions copied back, protected text or a placebo's product, are a small part of it).
    """
    box = bounding_box(region)
    if box is not None:
        np.copyto(out[box], source[box], where=region[box][..., None] if out.ndim == 3 else region[box])
    return out


def allowed_region(kind: str, mask: np.ndarray, placebo_margin_px: int) -> np.ndarray:
    """Pixels a variant of ``kind`` may change at a frame with product ``mask`` (see :mod:`.render`)."""
    if kind != "placebo":
        return np.ones(mask.shape, dtype=bool)
    return ~dilate_ellipse(mask, placebo_margin_px)


def guarded_protect(region: np.ndarray | None, guard_px: int) -> np.ndarray | None:
    """``region`` dilated by ``guard_px`` (the pixels actually copied from the source); None if empty."""
    if region is None or not region.any():
        return None
    if guard_px <= 0:
        return region
    kernel = np.ones((2 * guard_px + 1, 2 * guard_px + 1), np.uint8)
    return cv2.dilate(region.astype(np.uint8), kernel) > 0
