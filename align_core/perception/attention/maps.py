"""Attention maps A_t in [0, 1]: the meaning-map procedure on one frame and over a video.

Per frame (:func:`attention_map`): the frame is resampled to a working resolution (long side at
most ``max_long_side``); for each patch size (1, 3 and 7 degrees of visual angle through
:class:`~align_core.perception.attention.geometry.ViewingGeometry`) a :class:`PatchScorer` rates the
patches of an overlapping grid; each pixel gets the mean rating of the patches covering it; the
scales are averaged with ``scale_weights``; the result is smoothed with a Gaussian, min-max
normalised, raised to the power ``gamma`` (1.5: keeps the peaks, suppresses the broad floor that
patch averaging leaves) and resized back to the frame. Per-map normalisation of A_t is intended;
what must never be renormalised per frame is S_t = A_t * M_t, which another stage builds.

Why these scales and weights: Henderson & Hayes rated 3- and 7-degree patches on a monitor about
27 degrees wide; on a phone at reading distance the whole frame spans about 13 degrees, so a
7-degree patch covers half the frame and can only say which half is busier. Measured on NUS
Scene 001-150 (``bench/bench_scorer_cards.py --tune``), the equal 3/7 average with gamma 3 lost
most of the content signal (NSS 0.73 against 0.81 for the unaveraged cue map); adding a foveal
1-degree scale weighted 2 : 1 : 0.25 (1 : 3 : 7 degrees) with gamma 1.5 gave 0.96. The 3- and
7-degree scales stay for context; images 151-300 report it.

Per video (:func:`compute_attention_maps`): only keyframes are scored (each scene's first frame
and every ``keyframe_stride`` frames within the scene); the other frames are linearly
interpolated between the two keyframes of their own scene around them (or take the nearest
one), never across a scene cut; frames after a scene's last keyframe hold its map. When the
scorer has a motion weight (``feature_richness`` from version 4), every frame also gets its own
residual-motion cue (camera motion removed; :mod:`~align_core.perception.attention.motion`),
computed streaming on every decoded frame at a reduced resolution and added to the carried map.
"""

from __future__ import annotations

import json
import lzma
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from align_core.io.arrays import save_npz_atomic
from align_core.io.video_io import VideoError, iter_frames, probe_video
from align_core.perception.attention.base import PatchScorer, check_frame, splat_patch_scores
from align_core.perception.attention.geometry import (
    DEFAULT_DISPLAY_WIDTH_CM,
    DEFAULT_VIEWING_DISTANCE_CM,
    ViewingGeometry,
    patch_grid,
)
from align_core.perception.attention.motion import ResidualMotion

__all__ = [
    "AttentionConfig",
    "AttentionMaps",
    "DEFAULT_SCALES_DEG",
    "DEFAULT_SCALE_WEIGHTS",
    "analysis_map",
    "attention_map",
    "attention_maps_from_frames",
    "compute_attention_maps",
    "decode_keyframes",
    "encode_keyframes",
    "keyframes_for_scenes",
    "load_attention_maps",
    "postprocess_map",
    "raw_meaning_map",
    "save_attention_maps",
    "with_motion",
    "working_size",
]

Carry = Literal["linear", "nearest"]
FORMAT_VERSION = 2  # bump when the npz layout changes (2: optional per-frame motion cue)
READABLE_VERSIONS = (1, 2)

#: Default patch sizes (degrees of visual angle) and their weights in the scale average, chosen
#: on NUS Scene 001-150 (see the module docstring); other scales default to equal weights.
DEFAULT_SCALES_DEG: tuple[float, ...] = (1.0, 3.0, 7.0)
DEFAULT_SCALE_WEIGHTS: tuple[float, ...] = (2.0, 1.0, 0.25)


@dataclass(frozen=True)
class AttentionConfig:
    """Every parameter of the procedure; stored with the maps.

    ``smoothing_sigma_at_576`` is the Gaussian sigma in pixels for a 576-pixel-wide map (the
    original code smoothed 576x1024 frames with sigma 5 px); at a working width ``w`` the sigma
    is ``smoothing_sigma_at_576 * w / 576``, the same blur relative to the frame.
    ``grid_step_frac`` spaces patch centres that many radii apart (see
    :func:`~align_core.perception.attention.geometry.patch_grid`). ``scale_weights`` weighs each scale's map
    in the average (one non-negative weight per scale); ``None`` means the tuned
    ``DEFAULT_SCALE_WEIGHTS`` for the default scales and equal weights for any other scales (the
    version 1 procedure: 3 and 7 degrees, equal weights, gamma 3). It is resolved to a tuple, so
    stored configs always say which weights made the maps.
    """

    scales_deg: tuple[float, ...] = DEFAULT_SCALES_DEG
    scale_weights: tuple[float, ...] | None = None
    grid_step_frac: float = 0.75
    display_width_cm: float = DEFAULT_DISPLAY_WIDTH_CM
    viewing_distance_cm: float = DEFAULT_VIEWING_DISTANCE_CM
    smoothing_sigma_at_576: float = 5.0
    gamma: float = 1.5
    max_long_side: int = 512
    keyframe_stride: int = 6
    carry: Carry = "linear"

    def __post_init__(self) -> None:
        if not self.scales_deg or any(s <= 0 for s in self.scales_deg):
            raise ValueError(f"scales_deg must be positive angles, got {self.scales_deg}")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if self.smoothing_sigma_at_576 < 0:
            raise ValueError(f"smoothing sigma must be >= 0, got {self.smoothing_sigma_at_576}")
        if self.max_long_side < 16:
            raise ValueError(f"max_long_side must be at least 16 px, got {self.max_long_side}")
        if self.keyframe_stride < 1:
            raise ValueError(f"keyframe_stride must be >= 1, got {self.keyframe_stride}")
        if self.carry not in ("linear", "nearest"):
            raise ValueError(f"carry must be 'linear' or 'nearest', got {self.carry!r}")
        object.__setattr__(self, "scales_deg", tuple(float(s) for s in self.scales_deg))
        weights = self.scale_weights
        if weights is None:
            weights = DEFAULT_SCALE_WEIGHTS if self.scales_deg == DEFAULT_SCALES_DEG else (1.0,) * len(self.scales_deg)
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(self.scales_deg):
            raise ValueError(f"scale_weights {weights} must give one weight per scale {self.scales_deg}")
        if any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise ValueError(f"scale_weights must be non-negative with a positive sum, got {weights}")
        object.__setattr__(self, "scale_weights", weights)

    def geometry(self, frame_width_px: int) -> ViewingGeometry:
        return ViewingGeometry(frame_width_px, self.display_width_cm, self.viewing_distance_cm)

    def smoothing_sigma_px(self, map_width_px: int) -> float:
        return self.smoothing_sigma_at_576 * map_width_px / 576.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scales_deg"] = list(self.scales_deg)
        data["scale_weights"] = list(self.scale_weights or ())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionConfig:
        data = dict(data)
        if "scales_deg" in data:
            data["scales_deg"] = tuple(data["scales_deg"])
        if data.get("scale_weights") is not None:
            data["scale_weights"] = tuple(data["scale_weights"])
        elif "scales_deg" in data:  # stored before scale weights existed: the scales were averaged equally
            data["scale_weights"] = (1.0,) * len(data["scales_deg"])
        return cls(**data)


def working_size(height: int, width: int, max_long_side: int) -> tuple[int, int]:
    """``(h, w)`` with the long side at most ``max_long_side``, aspect kept (never upscaled)."""
    scale = min(1.0, max_long_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def postprocess_map(raw: np.ndarray, config: AttentionConfig) -> np.ndarray:
    """Smooth, min-max normalise and apply gamma: ``float32`` in [0, 1] with max 1 and min 0.

    A map with no contrast at all (every patch rated the same) means attention is uniform and
    comes back as all ones, so downstream ratios such as sum(A*M)/sum(A) stay defined.
    """
    smoothed = np.asarray(raw, dtype=np.float32)
    sigma = config.smoothing_sigma_px(smoothed.shape[1])
    if sigma > 0:
        smoothed = cv2.GaussianBlur(smoothed, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    low, high = float(smoothed.min()), float(smoothed.max())
    if not high - low > 1e-6 * max(1.0, abs(high)):
        return np.ones_like(smoothed, dtype=np.float32)
    normalised = (smoothed - low) / (high - low)
    return np.power(normalised, config.gamma, dtype=np.float32)


def raw_meaning_map(
    frame: np.ndarray, scorer: PatchScorer, config: AttentionConfig, *, frame_index: int | None = None
) -> np.ndarray:
    """Scale-averaged (``config.scale_weights``) per-pixel mean patch rating, before smoothing
    (``float32``, frame size)."""
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    geometry = config.geometry(width)
    total = np.zeros((height, width), dtype=np.float64)
    weights = config.scale_weights or (1.0,) * len(config.scales_deg)
    for degrees, weight in zip(config.scales_deg, weights, strict=True):
        if weight == 0:
            continue
        radius = geometry.patch_radius_px(degrees)
        centres = patch_grid(height, width, radius, config.grid_step_frac)
        scores = np.asarray(scorer.score_patches(frame, centres, radius, frame_index=frame_index), dtype=np.float64)
        if scores.shape != (len(centres),):
            raise ValueError(
                f"scorer {scorer.scorer_id} returned scores of shape {scores.shape} for {len(centres)} patches"
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"scorer {scorer.scorer_id} returned non-finite scores at {degrees} degrees")
        total += weight * splat_patch_scores(scores, centres, radius, (height, width))
    return (total / sum(weights)).astype(np.float32)


def analysis_map(
    frame: np.ndarray,
    scorer: PatchScorer,
    config: AttentionConfig | None = None,
    *,
    frame_index: int | None = None,
) -> np.ndarray:
    """A_t at the analysis resolution (long side at most ``config.max_long_side``, default 512).

    ``float32`` in [0, 1] with min 0 and max 1 (see :func:`postprocess_map`). This is the map the
    video driver keeps and stores: maps are smooth, so the full-resolution map is its bilinear
    upsampling, computed frame by frame when a consumer asks for it.
    """
    config = config or AttentionConfig()
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    work_h, work_w = working_size(height, width, config.max_long_side)
    work = (
        frame
        if (work_h, work_w) == (height, width)
        else cv2.resize(frame, (work_w, work_h), interpolation=cv2.INTER_AREA)
    )
    return postprocess_map(raw_meaning_map(work, scorer, config, frame_index=frame_index), config)


def attention_map(
    frame: np.ndarray,
    scorer: PatchScorer,
    config: AttentionConfig | None = None,
    *,
    frame_index: int | None = None,
) -> np.ndarray:
    """A_t for one RGB frame: ``float32 (H, W)`` in [0, 1], same size as the frame.

    Deterministic for a deterministic scorer; the manipulation check re-scores edited frames
    with it, so it is computed at the working resolution and resized back with bilinear
    interpolation (then min-max normalised again so max is exactly 1 and min exactly 0).
    """
    config = config or AttentionConfig()
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    amap = analysis_map(frame, scorer, config, frame_index=frame_index)
    if amap.shape != (height, width):
        amap = cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)
        low, high = float(amap.min()), float(amap.max())
        amap = (amap - low) / (high - low) if high > low else np.ones_like(amap)
    return np.clip(amap, 0.0, 1.0).astype(np.float32)


def with_motion(content: np.ndarray, motion: np.ndarray | None, weight: float) -> np.ndarray:
    """A frame's map from its carried content map and its own motion cue: ``content + weight *
    cue`` scaled to max 1 (``float32``, the content map's size).

    ``motion`` is the stored cue (``uint8``, value ``/ 255``, any size: resized bilinearly); a
    frame with no motion (all zero), no cue or weight 0 keeps its content map unchanged. Both
    :class:`AttentionMaps` and the control path's keyframe attention use this one function.
    """
    if motion is None or weight <= 0.0 or not motion.any():
        return content
    height, width = content.shape
    cue = motion.astype(np.float32) / np.float32(255.0)
    if cue.shape != (height, width):
        cue = cv2.resize(cue, (width, height), interpolation=cv2.INTER_LINEAR)
    mixed = content + np.float32(weight) * cue
    return (mixed / np.float32(mixed.max())).astype(np.float32)


def keyframes_for_scenes(scene_start_frames: Sequence[int], frame_count: int, stride: int) -> np.ndarray:
    """Each scene's first frame and every ``stride`` frames after it within the scene."""
    starts = validate_scene_starts(scene_start_frames, frame_count)
    ends = np.append(starts[1:], frame_count)
    return np.concatenate([np.arange(s, e, stride, dtype=np.int64) for s, e in zip(starts, ends, strict=True)])


def validate_scene_starts(scene_start_frames: Sequence[int], frame_count: int, video: str = "video") -> np.ndarray:
    """Scene starts as ``int64``: strictly increasing, first 0, all inside the video."""
    starts = np.asarray(list(scene_start_frames), dtype=np.int64)
    if starts.size == 0:
        raise ValueError(f"{video}: no scene starts given (a single-scene video has [0])")
    if starts[0] != 0:
        raise ValueError(f"{video}: first scene starts at frame {starts[0]}, not 0; frames before it have no scene")
    if np.any(np.diff(starts) <= 0):
        raise ValueError(f"{video}: scene starts {starts.tolist()} are not strictly increasing")
    if starts[-1] >= frame_count:
        raise ValueError(f"{video}: scene start {int(starts[-1])} is outside the video ({frame_count} frames)")
    return starts


@dataclass
class AttentionMaps:
    """Attention maps of a whole video, held as keyframe maps plus the rule that carries them.

    ``keyframe_maps`` is ``[K, h, w]`` for the frames in ``keyframe_indices``: ``float32`` at the
    analysis resolution, or ``uint8`` in the stored form (value ``/ 255``, at the storage
    resolution: what :func:`load_attention_maps` returns, a quarter of the memory); ``frame_size``
    is the video's ``(H, W)`` (None: the maps' own size). A frame's map is a pure function of
    the keyframes, the scene starts and ``carry`` (see module docstring), plus, when
    ``motion_maps`` is given (``uint8 [T, hm, wm]``, one residual-motion cue per frame, see
    :mod:`~align_core.perception.attention.motion`), that frame's cue weighted ``motion_weight``
    (:func:`with_motion`): blended at the keyframes' resolution, then upsampled bilinearly to ``frame_size`` (the two commute, both
    being linear). :meth:`map_at` and :meth:`iter_maps` give one frame at a time in constant
    memory; :meth:`analysis_map_at` skips the upsampling; ``maps`` materialises the dense
    ``float32 [T, H, W]`` stack (short videos and tests only).
    """

    keyframe_maps: np.ndarray
    keyframe_indices: np.ndarray
    scene_start_frames: np.ndarray
    frame_count: int
    scorer_id: str
    config: dict[str, Any]
    carry: Carry = "linear"
    scorer_metadata: dict[str, Any] = field(default_factory=dict)
    video: str = ""
    frame_size: tuple[int, int] | None = None
    motion_maps: np.ndarray | None = None
    motion_weight: float = 0.0

    def __post_init__(self) -> None:
        keyframes = np.asarray(self.keyframe_maps)
        self.keyframe_maps = keyframes if keyframes.dtype == np.uint8 else keyframes.astype(np.float32, copy=False)
        if self.frame_size is None:
            self.frame_size = (
                (int(self.keyframe_maps.shape[1]), int(self.keyframe_maps.shape[2]))
                if self.keyframe_maps.ndim == 3
                else (0, 0)
            )
        self.frame_size = (int(self.frame_size[0]), int(self.frame_size[1]))
        self.keyframe_indices = np.asarray(self.keyframe_indices, dtype=np.int64)
        self.scene_start_frames = validate_scene_starts(self.scene_start_frames, self.frame_count, self.video or "maps")
        if self.keyframe_maps.ndim != 3 or len(self.keyframe_maps) != len(self.keyframe_indices):
            raise ValueError(
                f"{self.video or 'maps'}: keyframe maps {self.keyframe_maps.shape} do not match "
                f"{len(self.keyframe_indices)} keyframe indices"
            )
        keys = self.keyframe_indices
        if keys.size == 0 or np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= self.frame_count:
            raise ValueError(
                f"{self.video or 'maps'}: keyframe indices must increase strictly within "
                f"[0, {self.frame_count}), got {keys.tolist()[:10]}"
            )
        scene_of_key = np.searchsorted(self.scene_start_frames, self.keyframe_indices, side="right") - 1
        missing = np.setdiff1d(np.arange(len(self.scene_start_frames)), scene_of_key)
        if missing.size:
            raise ValueError(f"{self.video or 'maps'}: scenes {missing.tolist()} have no keyframe")
        first_key = np.full(len(self.scene_start_frames), -1, dtype=np.int64)
        first_key[scene_of_key[::-1]] = self.keyframe_indices[::-1]
        if np.any(first_key != self.scene_start_frames):
            raise ValueError(f"{self.video or 'maps'}: every scene's first frame must be a keyframe")
        self._scene_of_key = scene_of_key
        self._check_motion()

    def _check_motion(self) -> None:
        if self.motion_maps is None:
            return
        self.motion_maps = np.asarray(self.motion_maps)
        if self.motion_maps.dtype != np.uint8 or self.motion_maps.ndim != 3:
            raise ValueError(
                f"{self.video or 'maps'}: motion maps must be uint8 [T, h, w], got {self.motion_maps.dtype} {self.motion_maps.shape}"
            )
        if len(self.motion_maps) != self.frame_count:
            raise ValueError(
                f"{self.video or 'maps'}: {len(self.motion_maps)} motion maps for {self.frame_count} frames"
            )
        if not self.motion_weight >= 0:
            raise ValueError(f"{self.video or 'maps'}: motion weight must be >= 0, got {self.motion_weight}")

    def motion_at(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s stored motion cue (``uint8``), or None when the maps have none."""
        return None if self.motion_maps is None else self.motion_maps[index]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.frame_count, *self.frame_size)

    def __len__(self) -> int:
        return self.frame_count

    def carry_weights(self, index: int) -> tuple[int, int, float]:
        """``(k0, k1, w)``: frame ``index``'s map is ``(1 - w) * key[k0] + w * key[k1]``.

        ``k0`` is the last keyframe at or before the frame in its scene and ``k1`` the next
        keyframe in the same scene (``k1 == k0`` past the scene's last keyframe).
        """
        if not 0 <= index < self.frame_count:
            raise IndexError(f"{self.video or 'maps'}: frame {index} outside [0, {self.frame_count})")
        k0 = int(np.searchsorted(self.keyframe_indices, index, side="right") - 1)
        k1 = k0 + 1
        if k1 >= len(self.keyframe_indices) or self._scene_of_key[k1] != self._scene_of_key[k0]:
            return k0, k0, 0.0
        f0, f1 = int(self.keyframe_indices[k0]), int(self.keyframe_indices[k1])
        w = (index - f0) / (f1 - f0)
        if self.carry == "nearest":
            return (k1, k1, 0.0) if w > 0.5 else (k0, k0, 0.0)
        return k0, k1, float(w)

    @property
    def stored_form(self) -> bool:
        """True when the keyframes are held as stored (``uint8``, value ``/ 255``)."""
        return self.keyframe_maps.dtype == np.uint8

    def keyframe(self, k: int) -> np.ndarray:
        """Keyframe ``k``'s map, ``float32 (h, w)`` in [0, 1] (a new array)."""
        key = self.keyframe_maps[k]
        return key.astype(np.float32) / np.float32(255.0) if self.stored_form else key.copy()

    def analysis_map_at(self, index: int) -> np.ndarray:
        """A_t for frame ``index`` at the keyframes' resolution (``float32 (h, w)``): the carried
        content map combined with the frame's own motion cue (:func:`with_motion`)."""
        k0, k1, w = self.carry_weights(index)
        if w == 0.0:
            content = self.keyframe(k0)
        else:
            content = ((1.0 - w) * self.keyframe(k0) + w * self.keyframe(k1)).astype(np.float32)
        return with_motion(content, self.motion_at(index), self.motion_weight)

    def map_at(self, index: int) -> np.ndarray:
        """A_t for frame ``index`` at the frame's size (``float32 (H, W)``, bilinear upsampling)."""
        amap = self.analysis_map_at(index)
        height, width = self.frame_size
        if amap.shape != (height, width):
            amap = np.clip(cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        return amap

    def iter_maps(self) -> Iterator[np.ndarray]:
        for index in range(self.frame_count):
            yield self.map_at(index)

    @property
    def maps(self) -> np.ndarray:
        """Dense ``float32 [T, H, W]`` (allocates T maps: prefer :meth:`iter_maps` for long videos)."""
        out = np.empty(self.shape, dtype=np.float32)
        for index in range(self.frame_count):
            out[index] = self.map_at(index)
        return out


def compute_attention_maps(
    video_path: str | os.PathLike[str],
    scene_start_frames: Sequence[int],
    scorer: PatchScorer,
    config: AttentionConfig | None = None,
    *,
    frame_limit: int | None = None,
    storage_scale: float | None = None,
) -> AttentionMaps:
    """Attention maps for every frame of a video, scoring keyframes only.

    ``storage_scale`` keeps each keyframe in the form :func:`save_attention_maps` stores it (area
    resampled to that share of the analysis size per side, ``uint8``): the maps are then exactly
    what a later :func:`load_attention_maps` returns, and a 60 s 1080x1920 ad's 300 keyframes
    hold 11 MB instead of 177 MB. Save them with ``storage_scale=1``.

    Frames are decoded one at a time and only keyframes are kept, as maps at the analysis
    resolution (:func:`analysis_map`: long side ``config.max_long_side``, 512 by default, i.e.
    288x512 for a 1080x1920 ad, 0.6 MB per keyframe), so memory grows with the number of
    keyframes at that size, never with the number of frames or the frame size. A scorer with a
    motion weight adds one ``uint8`` motion cue per frame at a long side of 128 px (9 KB per
    frame, 17 MB for a 60 s ad at 30 fps). Scene starts must begin at
    0, increase strictly and lie inside the video (or inside ``frame_limit``, which restricts
    the run to the first frames, e.g. for previews and benchmarks); errors name the video.
    """
    video_path = Path(video_path)
    probe = probe_video(video_path)
    total = probe.frame_count if frame_limit is None else min(probe.frame_count, int(frame_limit))
    if total < 1:
        raise ValueError(f"{video_path}: frame_limit {frame_limit} leaves no frame")
    return attention_maps_from_frames(
        iter_frames(video_path, 0, total),
        total,
        (probe.height, probe.width),
        scene_start_frames,
        scorer,
        config,
        storage_scale=storage_scale,
        video=str(video_path),
    )


def attention_maps_from_frames(
    frames: Iterable[np.ndarray],
    frame_count: int,
    frame_size: tuple[int, int],
    scene_start_frames: Sequence[int],
    scorer: PatchScorer,
    config: AttentionConfig | None = None,
    *,
    storage_scale: float | None = None,
    video: str = "frames",
) -> AttentionMaps:
    """:func:`compute_attention_maps` on frames from any source (a decoder, a folder of images),
    consumed one at a time; ``frame_count`` is the expected count (fewer frames may come)."""
    config = config or AttentionConfig()
    starts = validate_scene_starts(scene_start_frames, frame_count, video)
    wanted = set(keyframes_for_scenes(starts, frame_count, config.keyframe_stride).tolist())
    map_h, map_w = working_size(*frame_size, config.max_long_side)
    keep_h, keep_w = (
        (map_h, map_w)
        if storage_scale is None
        else (max(1, round(map_h * storage_scale)), max(1, round(map_w * storage_scale)))
    )
    # One preallocated array (not a list stacked at the end, which held every map twice).
    keyframe_maps = np.empty((len(wanted), keep_h, keep_w), dtype=np.float32 if storage_scale is None else np.uint8)
    keyframe_indices: list[int] = []
    motion_weight = float(getattr(scorer, "motion_weight", 0.0))
    tracker = ResidualMotion(frame_size, getattr(scorer, "motion_settings", None)) if motion_weight > 0 else None
    motion = None if tracker is None else np.zeros((frame_count, *tracker.store_size), dtype=np.uint8)
    scene_starts = set(starts.tolist())
    decoded = 0
    for index, frame in enumerate(frames):
        if index >= frame_count:
            break
        decoded = index + 1
        if tracker is not None and motion is not None:
            motion[index] = tracker.step(frame, index in scene_starts)
        if index in wanted:
            amap = analysis_map(frame, scorer, config, frame_index=index)
            if amap.shape != (map_h, map_w):
                raise VideoError(
                    video,
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {frame_size[1]}x{frame_size[0]}",
                )
            keyframe_maps[len(keyframe_indices)] = (
                amap if storage_scale is None else _storage_form(amap, keep_h, keep_w)
            )
            keyframe_indices.append(index)
    if decoded != frame_count:
        # Container frame counts can be estimates; the decoded frames are the truth.
        starts = validate_scene_starts(starts, decoded, video)
    if not keyframe_indices:
        raise VideoError(video, "no keyframe could be decoded")
    return AttentionMaps(
        frame_size=frame_size,
        keyframe_maps=keyframe_maps[: len(keyframe_indices)],
        keyframe_indices=np.asarray(keyframe_indices, dtype=np.int64),
        scene_start_frames=starts,
        frame_count=decoded,
        scorer_id=scorer.scorer_id,
        config=config.to_dict(),
        carry=config.carry,
        scorer_metadata=scorer.metadata(),
        video=video,
        motion_maps=None if motion is None else motion[:decoded],
        motion_weight=motion_weight,
    )


def encode_keyframes(quantised: np.ndarray) -> bytes:
    """Lossless code for ``uint8 [K, h, w]``: 2-D difference (the gradient predictor
    ``up + left - up_left``, modulo 256) then LZMA; smooth maps leave residuals of 0 and +-1.

    Streamed keyframe by keyframe (the difference is within each keyframe), so encoding holds
    one keyframe's residual, not the whole video's.
    """
    total = int(np.prod(quantised.shape))
    # Preset 9's 64 MiB dictionary makes the encoder allocate about 670 MB whatever the input.
    # The encoder needs ~11x its dictionary, so it is capped at 4 MiB (~45 MB, whatever the
    # video's length); a smaller input gets a dictionary its own size (same output as preset 9).
    dict_size = int(min(4 << 20, max(1 << 16, total)))
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size}]
    compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ, filters=filters)
    parts = []
    for key in quantised:
        residual = np.diff(np.diff(key.astype(np.int16), axis=0, prepend=0), axis=1, prepend=0)
        parts.append(compressor.compress(np.mod(residual, 256).astype(np.uint8).tobytes()))
    parts.append(compressor.flush())
    return b"".join(parts)


def decode_keyframes(blob: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    residual = np.frombuffer(lzma.decompress(blob), dtype=np.uint8).reshape(shape)
    return np.cumsum(np.cumsum(residual, axis=1, dtype=np.uint8), axis=2, dtype=np.uint8)


def _storage_form(keymap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A keyframe map as stored: area-resampled to ``(height, width)``, ``round(255 * A)`` as uint8."""
    if keymap.shape != (height, width):
        keymap = cv2.resize(keymap, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(keymap * 255.0), 0, 255).astype(np.uint8)


def save_attention_maps(path: str | os.PathLike[str], maps: AttentionMaps, *, storage_scale: float = 0.5) -> Path:
    """Write maps atomically as an npz: 8-bit keyframe maps, the keyframe indices and scene starts.

    Only keyframe maps are stored; the other frames are rebuilt on load by the same carry rule.
    Keyframe maps are resampled to ``storage_scale`` of their analysis size per side (area
    averaging; for the demo's 288x512 frames the analysis size is the frame size, for a
    1080x1920 ad it is 288x512, stored at 144x256), quantised to ``round(255 * A)`` and coded losslessly (2-D difference + LZMA).
    Maps are smooth (patch averages over disks of 1, 3 and 7 degrees, then a Gaussian), so half
    resolution loses little: on the real clips the load error is at most about 1.2/255 (0.8/255
    for the version 3 scorer and procedure) and 0.2/255 on average, against 0.5/255 for quantisation alone (``storage_scale=1``), at a
    quarter of the pixels. A 10-second 288x512 video at 12 fps with the default stride (20
    keyframes) took 123 KB on real frames (110 KB with the version 3 procedure; bench/bench_attention.py).
    """
    if not 0.05 <= storage_scale <= 1.0:
        raise ValueError(f"{path}: storage_scale must be in [0.05, 1], got {storage_scale}")
    height, width = int(maps.keyframe_maps.shape[1]), int(maps.keyframe_maps.shape[2])
    store_h, store_w = max(1, round(height * storage_scale)), max(1, round(width * storage_scale))
    if maps.stored_form and (store_h, store_w) == (height, width):
        quantised = maps.keyframe_maps  # already the stored form (round(255 * (q / 255)) == q): no copy
    else:
        quantised = np.empty((len(maps.keyframe_maps), store_h, store_w), dtype=np.uint8)
        for k in range(len(maps.keyframe_maps)):
            quantised[k] = _storage_form(maps.keyframe(k), store_h, store_w)
    meta = {
        "format_version": FORMAT_VERSION,
        "frame_count": int(maps.frame_count),
        "height": int(maps.frame_size[0]),
        "width": int(maps.frame_size[1]),
        "map_height": height,
        "map_width": width,
        "storage_height": store_h,
        "storage_width": store_w,
        "scorer_id": maps.scorer_id,
        "config": maps.config,
        "carry": maps.carry,
        "scorer_metadata": maps.scorer_metadata,
        "video": maps.video,
        "motion_weight": float(maps.motion_weight),
        "motion_shape": None if maps.motion_maps is None else list(maps.motion_maps.shape),
    }
    motion = (
        {} if maps.motion_maps is None else {"motion_lzma": np.frombuffer(encode_keyframes(maps.motion_maps), np.uint8)}
    )
    return save_npz_atomic(
        path,
        keyframes_lzma=np.frombuffer(encode_keyframes(quantised), dtype=np.uint8),
        keyframe_indices=maps.keyframe_indices,
        scene_start_frames=maps.scene_start_frames,
        meta=np.asarray(json.dumps(meta, sort_keys=True)),
        **motion,
    )


def load_attention_maps(path: str | os.PathLike[str]) -> AttentionMaps:
    """Read maps written by :func:`save_attention_maps`.

    Keyframes stay in their stored form (``uint8`` at the stored resolution, read as ``stored / 255``); frames
    are blended and resized to the frame's size on demand (:meth:`AttentionMaps.map_at`), so
    loading a 60 s ad holds a few MB, not a dense video.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            blob = data["keyframes_lzma"].tobytes()
            keyframe_indices = data["keyframe_indices"]
            scene_starts = data["scene_start_frames"]
            meta = json.loads(str(data["meta"]))
            motion_blob = data["motion_lzma"].tobytes() if meta.get("motion_shape") else None
        if meta.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"format version {meta.get('format_version')} is not one of {READABLE_VERSIONS}")
        height, width = int(meta["height"]), int(meta["width"])
        store_h, store_w = int(meta["storage_height"]), int(meta["storage_width"])
        quantised = decode_keyframes(blob, (len(keyframe_indices), store_h, store_w))
        motion = None if motion_blob is None else decode_keyframes(motion_blob, tuple(meta["motion_shape"]))
    except (OSError, KeyError, ValueError, lzma.LZMAError) as exc:
        raise ValueError(f"attention map file {path}: cannot be read ({exc})") from exc
    return AttentionMaps(
        keyframe_maps=quantised,
        keyframe_indices=keyframe_indices,
        scene_start_frames=scene_starts,
        frame_count=int(meta["frame_count"]),
        scorer_id=meta["scorer_id"],
        config=meta["config"],
        carry=meta["carry"],
        scorer_metadata=meta["scorer_metadata"],
        video=meta["video"],
        frame_size=(height, width),
        motion_maps=motion,
        motion_weight=float(meta.get("motion_weight", 0.0)),
    )
