"""Residual motion: what changes in a video once the camera's own motion is taken out.

Motion is the strongest single predictor of gaze in video (Itti 2005; Mital et al. 2011), but a
plain frame difference also fires on every edge of a panning shot (on the UCF Sports diving clip,
where the camera follows the diver, it scores below a centre bias). So per frame pair:

1. dense DIS optical flow (OpenCV, as the editing stage's propagation uses) on grey frames at a
   reduced resolution (long side ``flow_long_side``, 160 px), from the current frame back to the
   previous one;
2. the camera's motion as one global affine map, fitted robustly (``cv2.estimateAffine2D`` with
   RANSAC) to a subsample of the flow vectors;
3. the residual: the previous frame warped by that affine map (camera motion undone) and
   subtracted from the current one; pixels the camera just revealed have no previous value and
   get 0. Measured on the first half of the UCF clip (``bench/bench_scorer_cards.py
   --tune-video``), this motion-compensated difference predicted gaze far better than the length
   of the residual flow vectors (NSS 3.28 against 1.94): flow is unreliable in flat regions
   (water, sky), where the compensated difference is simply zero;
4. an exponential moving average over frames within a scene, reset at each scene start (nothing
   is compared across a cut), blurred, and mapped to [0, 1] on an absolute scale (a noise floor
   and a saturation, in grey levels), so a static shot gives an all-zero cue, not amplified noise.

:class:`ResidualMotion` runs it streaming, one frame at a time, holding one small grey frame and
one small average: constant memory whatever the video's length or frame size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from align_core.perception.attention.base import check_frame

__all__ = [
    "MotionSettings",
    "ResidualMotion",
    "camera_motion",
    "frame_difference",
    "compensated_difference",
]


@dataclass(frozen=True)
class MotionSettings:
    """Parameters of the residual-motion cue (stored with the maps).

    ``floor`` and ``saturation`` are grey-level differences (0-255) mapped to 0 and 1;
    ``ransac_threshold`` and ``blur_sigma`` are fractions of the flow frame's long side;
    ``smoothing`` is the weight of the running average's previous value. Chosen on the first half
    of the UCF Sports diving clip (``bench/bench_scorer_cards.py --tune-video``).
    """

    flow_long_side: int = 160
    store_long_side: int = 128
    sample_step: int = 4
    ransac_threshold: float = 0.004
    smoothing: float = 0.5
    blur_sigma: float = 0.03
    floor: float = 12.0
    saturation: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _small_grey(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` as grey at ``size``: every k-th pixel first (k keeps at least twice the target
    size), then area averaging; at 1080x1920 the area resize alone costs more than the flow."""
    frame = check_frame(frame)
    height, width = size
    step = max(1, min(frame.shape[0] // (2 * height), frame.shape[1] // (2 * width)))
    if step > 1:
        frame = np.ascontiguousarray(frame[step // 2 :: step, step // 2 :: step])
    small = frame if frame.shape[:2] == size else cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def _scaled_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(height, width))
    return max(8, round(height * scale)), max(8, round(width * scale))


def camera_motion(flow: np.ndarray, step: int, threshold_px: float) -> np.ndarray:
    """The dominant (camera) motion of a flow field as a ``2x3`` affine map fitted with RANSAC.

    ``flow`` is ``(H, W, 2)`` from the current frame to the previous one; the fit uses every
    ``step``-th pixel. A fit that fails (too few consistent vectors) falls back to the median
    translation, never to no motion at all.
    """
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    source = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    target = source + flow[ys.ravel(), xs.ravel()]
    affine, _inliers = cv2.estimateAffine2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold_px, maxIters=200, confidence=0.99
    )
    if affine is None or not np.all(np.isfinite(affine)):
        shift = np.median(target - source, axis=0)
        affine = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    return affine.astype(np.float32)


def compensated_difference(current: np.ndarray, previous: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``|current - previous warped by the camera motion|``, ``float32`` grey levels.

    ``affine`` maps current-frame pixels to their previous-frame positions (:func:`camera_motion`);
    pixels whose previous position lies outside the frame (what a pan reveals), and two pixels
    beyond, get 0.
    """
    height, width = current.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(previous.astype(np.float32), affine, (width, height), flags=flags)
    seen = cv2.warpAffine(np.ones((height, width), np.float32), affine, (width, height), flags=flags)
    # Two more pixels of margin: the revealed edge's resampled neighbours mix old and new content.
    seen = cv2.erode((seen > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE)
    difference = np.abs(current.astype(np.float32) - warped)
    difference[seen == 0] = 0.0
    return difference


def frame_difference(previous: np.ndarray, current: np.ndarray, blur_frac: float = 0.02) -> np.ndarray:
    """Baseline motion map: blurred absolute grey difference of two RGB frames, ``float32`` (no camera model)."""
    grey_prev = cv2.cvtColor(check_frame(previous), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_cur = cv2.cvtColor(check_frame(current), cv2.COLOR_RGB2GRAY).astype(np.float32)
    sigma = max(0.5, blur_frac * max(current.shape[:2]))
    return cv2.GaussianBlur(np.abs(grey_cur - grey_prev), (0, 0), sigmaX=sigma)


class ResidualMotion:
    """The residual-motion cue of a video, one frame at a time (see the module docstring).

    ``frame_size`` is the video's ``(H, W)``; :meth:`step` takes each frame in order with whether
    it starts a scene and returns the cue as stored: ``uint8`` (value ``/ 255``) at
    :attr:`store_size` (long side ``store_long_side``).
    """

    def __init__(self, frame_size: tuple[int, int], settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self.flow_size = _scaled_size(*frame_size, self.settings.flow_long_side)
        self.store_size = _scaled_size(*frame_size, self.settings.store_long_side)
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._previous: np.ndarray | None = None
        self._average: np.ndarray | None = None

    def residual(self, frame: np.ndarray) -> np.ndarray | None:
        """Motion-compensated difference of ``frame`` against the previous one (grey levels, flow
        size); None for the first frame."""
        grey = _small_grey(frame, self.flow_size)
        previous, self._previous = self._previous, grey
        if previous is None:
            return None
        flow = np.asarray(self._dis.calc(grey, previous, None))  # type: ignore[call-overload]  # the stubs omit None
        threshold = self.settings.ransac_threshold * max(self.flow_size)
        return compensated_difference(grey, previous, camera_motion(flow, self.settings.sample_step, threshold))

    def step(self, frame: np.ndarray, scene_start: bool = False) -> np.ndarray:
        """The cue of the next frame (``uint8`` at :attr:`store_size`); ``scene_start`` resets it."""
        if scene_start:
            self._previous, self._average = None, None
        change = self.residual(frame)
        if change is None:
            return np.zeros(self.store_size, dtype=np.uint8)
        keep = np.float32(self.settings.smoothing)
        previous = self._average if self._average is not None else change
        self._average = keep * previous + (np.float32(1.0) - keep) * change
        return self._stored(self._average)

    def _stored(self, average: np.ndarray) -> np.ndarray:
        settings = self.settings
        sigma = max(0.5, settings.blur_sigma * max(self.flow_size))
        blurred = cv2.GaussianBlur(average, (0, 0), sigmaX=sigma)
        cue = np.clip((blurred - settings.floor) / (settings.saturation - settings.floor), 0.0, 1.0)
        height, width = self.store_size
        if cue.shape != (height, width):
            cue = cv2.resize(cue, (width, height), interpolation=cv2.INTER_AREA)
        return np.clip(np.rint(cue * 255.0), 0, 255).astype(np.uint8)
