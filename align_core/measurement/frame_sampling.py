"""Which frames the quality stage measures, and at what resolution (real-size ads in bounded time).

A 60 s 1080x1920 ad has 1,800 frames per variant; scoring every one of them with four attention
models, or computing SSIM at full resolution, costs hours on two cores. The quality stage
(:func:`align_core.measurement.quality.evaluate_variants`, :func:`align_core.measurement.manipulation.verify_variants`)
therefore decodes every frame once (in lockstep across the original and the variants) but
measures only a sample, at an analysis resolution:

- **Sampling rule** (:func:`sample_frames`). The video is cut into *segments*: maximal runs of
  frames with the same scene and the same timing window (a frame's window holds its centre
  time). In every segment ``[a, b)`` the frames ``a, a + k, a + 2k, ...`` and ``b - 1`` are
  measured. So the first and last frame of every scene and of every window are always measured,
  every scene and window is covered, and no gap between measured frames exceeds ``k``. With
  ``k = 1`` every frame is measured.
- **Stride from a budget** (:func:`stride_for`): ``k = max(min_stride, ceil(frames / max_frames))``,
  so a 60 s ad costs about what a ``max_frames``-frame one does at ``k = 1`` (plus at most two
  frames per segment); ``max_frames = 0`` measures every frame.
- **Analysis resolution** (:func:`analysis_factor`, :func:`downscale`): a frame is averaged down
  by the smallest integer factor ``f = ceil(max(H, W) / max_side)`` (block means, OpenCV
  ``INTER_AREA`` on the frame cropped to a multiple of ``f``), so its long side is at most
  ``max_side``: ``f = 3`` for 1080x1920 at ``max_side = 640``, ``f = 1`` (the frame itself,
  bit for bit) for anything already that small, such as the 288x512 demo. A region (mask) is
  averaged the same way into per-block coverage in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "FrameSample",
    "analysis_factor",
    "downscale",
    "downscale_mask",
    "full_blocks",
    "sample_frames",
    "segments",
    "stride_for",
]


def segments(
    frame_count: int, scene_ranges: Sequence[Sequence[int]], frame_windows: Sequence[str]
) -> list[tuple[int, int]]:
    """Half-open runs ``[a, b)`` of frames sharing one scene and one timing window, in order."""
    if len(frame_windows) != frame_count:
        raise ValueError(f"{len(frame_windows)} window labels for {frame_count} frames")
    cuts = {0, frame_count}
    for start, stop in scene_ranges:
        cuts.update((int(start), int(stop)))
    cuts.update(i for i in range(1, frame_count) if frame_windows[i] != frame_windows[i - 1])
    bounds = sorted(c for c in cuts if 0 <= c <= frame_count)
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=False) if b > a]


def stride_for(frame_count: int, max_frames: int, min_stride: int = 1) -> int:
    """``max(min_stride, ceil(frame_count / max_frames))``; ``max_frames <= 0`` means no budget (``min_stride``)."""
    min_stride = max(1, int(min_stride))
    if max_frames <= 0:
        return min_stride
    return max(min_stride, math.ceil(frame_count / max_frames))


def sample_frames(
    frame_count: int, scene_ranges: Sequence[Sequence[int]], frame_windows: Sequence[str], stride: int
) -> np.ndarray:
    """Sorted frame indices: every ``stride``-th frame of each segment from its first, plus its last."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    chosen: set[int] = set()
    for a, b in segments(frame_count, scene_ranges, frame_windows):
        chosen.update(range(a, b, stride))
        chosen.add(b - 1)
    return np.array(sorted(chosen), dtype=np.int64)


@dataclass(frozen=True)
class FrameSample:
    """A sample of a video's frames with the rule that chose it (recorded beside the figures)."""

    frames: tuple[int, ...]
    frame_count: int
    stride: int

    @classmethod
    def build(
        cls,
        frame_count: int,
        scene_ranges: Sequence[Sequence[int]],
        frame_windows: Sequence[str],
        max_frames: int,
        min_stride: int = 1,
    ) -> FrameSample:
        stride = stride_for(frame_count, max_frames, min_stride)
        return cls(
            tuple(int(i) for i in sample_frames(frame_count, scene_ranges, frame_windows, stride)), frame_count, stride
        )

    @property
    def every_frame(self) -> bool:
        return len(self.frames) == self.frame_count

    def describe(self) -> str:
        if self.every_frame:
            return f"every frame ({self.frame_count})"
        return (
            f"{len(self.frames)} of {self.frame_count} frames (every {self.stride}th of each scene-window segment "
            f"plus its first and last)"
        )


def analysis_factor(height: int, width: int, max_side: int | None) -> int:
    """Integer block-averaging factor bringing the long side to at most ``max_side`` (1 when None/0 or already small)."""
    if not max_side or max_side <= 0:
        return 1
    return max(1, math.ceil(max(int(height), int(width)) / int(max_side)))


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means over ``factor x factor`` pixels (the image itself when ``factor`` is 1)."""
    if factor <= 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return cv2.resize(image[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA)


def downscale_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Per-block share of ``mask`` pixels (float32 in [0, 1]); the bool mask itself when ``factor`` is 1."""
    mask = np.asarray(mask, dtype=bool)
    if factor <= 1:
        return mask
    return downscale(mask.astype(np.float32), factor)


def full_blocks(coverage: np.ndarray) -> np.ndarray:
    """bool: blocks whose every pixel is in the region (a bool mask passes through)."""
    if coverage.dtype == bool:
        return coverage
    return coverage >= 1.0 - 1e-6
