"""Viewing geometry and the overlapping patch grid of the meaning-map procedure.

Meaning maps (Henderson & Hayes, Nature Human Behaviour 1, 2017) rate circular patches whose
size is fixed in degrees of visual angle (Henderson & Hayes used 3 and 7 degrees in diameter;
the platform adds a 1-degree scale, see :mod:`align_core.perception.attention.maps`), not in pixels or in
fractions of the image: what a viewer can take in at one glance depends on how large the
screen is in their visual field. An ad is watched on a phone held at reading distance, so the
default geometry is a 6.8 cm wide (portrait) display seen from 30 cm: the whole frame width
spans about 12.9 degrees, a 1-degree patch is about 8 % of the width across, a 3-degree patch
about 23 % and a 7-degree patch about 54 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "DEFAULT_DISPLAY_WIDTH_CM",
    "DEFAULT_VIEWING_DISTANCE_CM",
    "ViewingGeometry",
    "disk_kernel",
    "patch_grid",
]

# A 6.1-6.7" phone in portrait is about 6.5-7.1 cm wide; 30 cm is a common reading distance.
DEFAULT_DISPLAY_WIDTH_CM = 6.8
DEFAULT_VIEWING_DISTANCE_CM = 30.0


@dataclass(frozen=True)
class ViewingGeometry:
    """How large a frame of ``frame_width_px`` pixels looks: a display ``display_width_cm``
    wide (the frame fills its width) seen from ``viewing_distance_cm``."""

    frame_width_px: int
    display_width_cm: float = DEFAULT_DISPLAY_WIDTH_CM
    viewing_distance_cm: float = DEFAULT_VIEWING_DISTANCE_CM

    def __post_init__(self) -> None:
        if self.frame_width_px <= 0:
            raise ValueError(f"frame width must be positive, got {self.frame_width_px} px")
        if self.display_width_cm <= 0 or self.viewing_distance_cm <= 0:
            raise ValueError(
                f"display width ({self.display_width_cm} cm) and viewing distance "
                f"({self.viewing_distance_cm} cm) must be positive"
            )

    @property
    def pixels_per_cm(self) -> float:
        return self.frame_width_px / self.display_width_cm

    def pixels_per_degree(self) -> float:
        """Pixels per degree at the centre of the display (small-angle exact: cm for 1 degree)."""
        return self.viewing_distance_cm * 2.0 * math.tan(math.radians(0.5)) * self.pixels_per_cm

    def patch_radius_px(self, degrees: float) -> float:
        """Radius in pixels of a circular patch ``degrees`` of visual angle in diameter:
        ``distance * tan(degrees / 2) * pixels_per_cm``."""
        if degrees <= 0:
            raise ValueError(f"patch size must be a positive angle, got {degrees} degrees")
        return self.viewing_distance_cm * math.tan(math.radians(degrees / 2.0)) * self.pixels_per_cm

    def display_width_deg(self) -> float:
        """The angle the whole display width subtends."""
        return math.degrees(2.0 * math.atan(self.display_width_cm / (2.0 * self.viewing_distance_cm)))

    def for_width(self, frame_width_px: int) -> ViewingGeometry:
        """The same display and distance for the frame resampled to another pixel width."""
        return replace(self, frame_width_px=int(frame_width_px))


def patch_grid(height: int, width: int, radius_px: float, step_frac: float) -> np.ndarray:
    """Centres ``(n, 2)`` as ``(x, y)`` float pixel coordinates of an overlapping square grid.

    Centres are ``step = step_frac * radius_px`` apart along both axes and the grid is centred
    in the frame with at most ``step / 2`` of margin on each side, so every pixel lies within
    ``step / sqrt(2)`` of a centre: for ``step_frac <= sqrt(2)`` every pixel is covered by at
    least one patch, and away from the borders by about ``pi / step_frac**2`` patches (5.6 at
    the default 0.75). Henderson & Hayes spaced their patches at about 0.9 (3 deg) and 0.64
    (7 deg) radii.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"patch grid needs a positive frame size, got {width}x{height}")
    if radius_px <= 0:
        raise ValueError(f"patch radius must be positive, got {radius_px} px")
    if not 0 < step_frac <= math.sqrt(2.0):
        raise ValueError(f"grid step must be in (0, sqrt(2)] patch radii so every pixel is covered, got {step_frac}")
    step = step_frac * radius_px

    def _axis(length: int) -> np.ndarray:
        count = max(1, math.ceil(length / step))
        first = (length - 1 - (count - 1) * step) / 2.0
        return first + step * np.arange(count)

    xs, ys = _axis(width), _axis(height)
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def disk_kernel(radius_px: float) -> np.ndarray:
    """``float32`` kernel that is 1 inside a circle of ``radius_px`` (pixel centres) and 0 outside."""
    half = int(math.floor(radius_px))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius_px**2
    return inside.astype(np.float32)
