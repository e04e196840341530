"""Control tensors C_t = [M_t, S_t] and the attention-product alignment they define.

Definitions (one video, frames t = 0..T-1, pixels p):

* ``A_t`` attention in [0, 1], ``M_t`` keyword mask in {0, 1}.
* ``S_t = A_t * M_t``: attention on the product. Never re-normalised per frame, so values stay
  comparable across frames and videos.
* alignment ``a_t = sum_p(A_t M_t) / sum_p(A_t)``: the share of the frame's attention that lands
  on the product. A frame with no attention at all (``sum A_t == 0``) has ``a_t = 0``: no
  attention means none on the product, and the frame carries no weight in scene alignment.
* scene alignment, primary (``attention_weighted``): ``sum_{t in scene} sum_p(A_t M_t) /
  sum_{t in scene} sum_p(A_t)``, the share of the scene's pooled attention on the product, the
  same quantity as a frame's but for the scene (and the one comparable to the given
  ``attention_proportion``). Secondary (``frame_mean``): the plain mean of ``a_t``.

Real-size storage (:func:`control_from_maps`, format v3, what the ``control_tensors`` asset
writes): nothing holds a whole video. Masks are kept per frame, bit-packed and deflated
(:class:`~align_core.io.frames.MaskFrames`, exact); attention is kept as the attention stage's
8-bit keyframe maps at their analysis/storage resolution (144x256 for a 1080x1920 ad) plus, per
frame, the two keyframes and the weight that carry it, exactly as
:meth:`~align_core.perception.attention.maps.AttentionMaps.map_at` does. A_t at full resolution is the
bilinear upsampling of that map, decoded lazily frame by frame; the per-frame sums that
alignment needs (sum A_t, sum A_t M_t, coverage, range) are computed once while streaming and
stored, so plans read a 60 s ad's alignment without decoding a single map.

Dense storage (:func:`save_control_tensors` of a dense :class:`ControlTensors`, format v2, for
maps that come from anywhere else): masks bit-packed (lossless). Attention is stored with a
maximum absolute error of 1/510 (half a uint8 step), in a near-lossless predictive code built
for smooth, keyframe-carried maps:

1. a frame whose map is within 1/510 of the previous stored frame's reconstruction re-uses it
   (maps carried between keyframes cost nothing);
2. each other frame is predicted by bilinearly upsampling a least-squares low-resolution fit
   (1/4 of the size, 10-bit, stored as second differences), and the residual is rounded to
   whole uint8 steps: ``A_hat = P + r / 255`` with ``r = round(255 (A - P))``, so
   ``|A_hat - A| <= 1/510`` whatever ``P`` is. For smooth maps ``r`` is almost all zeros;
3. everything is deflated by ``np.savez_compressed``.
"""

from __future__ import annotations

import lzma
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from align_core.io.arrays import save_npz_atomic
from align_core.io.frames import FrameStore, LazyFrames, MaskFrames
from align_core.perception.attention.maps import with_motion

__all__ = [
    "ATTENTION_MAX_ERROR",
    "ControlTensors",
    "alignment_tables",
    "control_from_maps",
    "given_vs_computed_correlation",
    "load_control_tensors",
    "save_control_tensors",
    "scene_alignment",
]

if TYPE_CHECKING:
    from align_core.perception.attention.maps import AttentionMaps

FORMAT = "control-tensors-v2"  # v2: frames between anchors stored as interpolation weights
FORMAT_STREAMED = "control-tensors-v3"  # v3: per-frame compressed masks + keyframe attention, lazy
#: Maximum absolute error of stored attention (half a uint8 step).
ATTENTION_MAX_ERROR = 1.0 / 510.0
_LOWRES_FACTOR = 4
_LOWRES_LEVELS = 1023  # 10-bit low-resolution predictor
SCENE_METHODS = ("attention_weighted", "frame_mean")


_STAT_NAMES = ("attention_mass", "product_attention", "coverage", "attention_min", "attention_max")


@dataclass
class ControlTensors:
    """Masks and attention of one video; the control and alignment are derived from them.

    ``masks`` and ``attention`` are dense ``(T, H, W)`` arrays (short videos, tests) or lazy
    per-frame stores (:class:`~align_core.io.frames.FrameStore`, what :func:`load_control_tensors`
    returns for a streamed file): index them per frame, ``control.attention[t]``. ``stats``
    holds the per-frame sums when they were computed while streaming (see
    :func:`control_from_maps`), so alignment never needs the whole video decoded.
    """

    masks: Any  # bool (T, H, W): np.ndarray or MaskFrames
    attention: Any  # float32 (T, H, W) in [0, 1]: np.ndarray or a FrameStore
    stats: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        lazy = isinstance(self.masks, FrameStore) or isinstance(self.attention, FrameStore)
        if not lazy:
            self.masks = np.asarray(self.masks).astype(bool, copy=False)
            self.attention = np.asarray(self.attention, dtype=np.float32)
        if len(self.masks.shape) != 3 or tuple(self.masks.shape) != tuple(self.attention.shape):
            raise ValueError(
                f"control tensors need masks and attention of one (T, H, W) shape, got masks "
                f"{tuple(self.masks.shape)} and attention {tuple(self.attention.shape)}"
            )
        if lazy:
            if self.stats is None:
                self.stats = _stream_stats(self.masks, self.attention)
            bad = [name for name in _STAT_NAMES if np.shape(self.stats.get(name)) != (self.frame_count,)]
            if bad:
                raise ValueError(f"control tensor statistics {bad} do not have {self.frame_count} values")
            low, high = self.stats["attention_min"], self.stats["attention_max"]
            if len(low) and (
                not np.isfinite(low).all() or not np.isfinite(high).all() or low.min() < 0.0 or high.max() > 1.0
            ):
                raise ValueError(f"attention must be finite and in [0, 1], got range [{low.min()}, {high.max()}]")
            return
        if self.attention.size and (
            not np.isfinite(self.attention).all() or self.attention.min() < 0.0 or self.attention.max() > 1.0
        ):
            raise ValueError(
                f"attention must be finite and in [0, 1], got range [{np.nanmin(self.attention)}, {np.nanmax(self.attention)}]"
            )

    @property
    def frame_count(self) -> int:
        return int(self.masks.shape[0])

    @property
    def is_lazy(self) -> bool:
        return self.stats is not None

    @property
    def saliency(self) -> np.ndarray:
        """S_t = A_t * M_t for every frame, float32, not re-normalised (dense: short videos only)."""
        return np.asarray(self.attention, dtype=np.float32) * np.asarray(self.masks, dtype=bool)

    def control(self, t: int) -> np.ndarray:
        """The ControlNet conditioning of frame ``t``: float32 ``(2, H, W)`` = [M_t, S_t]."""
        mask = np.asarray(self.masks[t], dtype=bool).astype(np.float32)
        return np.stack([mask, np.asarray(self.attention[t], dtype=np.float32) * mask])

    def attention_mass_per_frame(self) -> np.ndarray:
        """sum_p A_t (float64, one value per frame)."""
        if self.stats is not None:
            return self.stats["attention_mass"].copy()
        return self.attention.reshape(self.frame_count, -1).sum(axis=1, dtype=np.float64)

    def product_attention_per_frame(self) -> np.ndarray:
        """sum_p A_t M_t (float64), the numerator of a_t."""
        if self.stats is not None:
            return self.stats["product_attention"].copy()
        flat_a = self.attention.reshape(self.frame_count, -1)
        flat_m = self.masks.reshape(self.frame_count, -1)
        return np.array([flat_a[t][flat_m[t]].sum(dtype=np.float64) for t in range(self.frame_count)])

    def alignment_per_frame(self) -> np.ndarray:
        """a_t = sum(A_t M_t) / sum(A_t), 0 where a frame has no attention (float64 ``(T,)``)."""
        return _ratio(self.product_attention_per_frame(), self.attention_mass_per_frame())

    def coverage_per_frame(self) -> np.ndarray:
        """Fraction of each frame's pixels inside the mask (float64 ``(T,)``)."""
        if self.stats is not None:
            return self.stats["coverage"].copy()
        return self.masks.reshape(self.frame_count, -1).mean(axis=1, dtype=np.float64)

    def attention_range(self) -> tuple[float, float]:
        """(min, max) of A over the whole video."""
        if self.stats is not None:
            if not self.frame_count:
                return 0.0, 0.0
            return float(self.stats["attention_min"].min()), float(self.stats["attention_max"].max())
        return (float(self.attention.min()), float(self.attention.max())) if self.attention.size else (0.0, 0.0)


def _stream_stats(masks, attention) -> dict[str, np.ndarray]:
    """Per-frame sums of a video, one frame in memory at a time."""
    count = int(masks.shape[0])
    stats = {name: np.zeros(count, dtype=np.float64) for name in _STAT_NAMES}
    for t in range(count):
        amap = np.asarray(attention[t], dtype=np.float32)
        mask = np.asarray(masks[t], dtype=bool)
        stats["attention_mass"][t] = amap.sum(dtype=np.float64)
        stats["product_attention"][t] = amap[mask].sum(dtype=np.float64)
        stats["coverage"][t] = mask.mean() if mask.size else 0.0
        stats["attention_min"][t] = amap.min() if amap.size else 0.0
        stats["attention_max"][t] = amap.max() if amap.size else 0.0
    return stats


class KeyframeAttention:
    """A_t decoded lazily from 8-bit keyframe maps and per-frame carry weights.

    ``keyframes`` is ``uint8 [K, h, w]``; frame ``t`` is ``(1 - w_t) * key[k0_t] / 255 +
    w_t * key[k1_t] / 255`` (``key[k0_t] / 255`` when ``w_t == 0``), upsampled bilinearly to
    ``frame_size`` and clipped to [0, 1]: the same arithmetic as
    :meth:`~align_core.perception.attention.maps.AttentionMaps.map_at`, so both give identical values,
    including each frame's own motion cue (``motion``, ``uint8 [T, hm, wm]``, weighted
    ``motion_weight`` by :func:`~align_core.perception.attention.maps.with_motion`) when the maps have one.
    """

    def __init__(
        self,
        keyframes: np.ndarray,
        k0: np.ndarray,
        k1: np.ndarray,
        weight: np.ndarray,
        frame_size: tuple[int, int],
        motion: np.ndarray | None = None,
        motion_weight: float = 0.0,
    ):
        self.keyframes = np.asarray(keyframes, dtype=np.uint8)
        self.k0 = np.asarray(k0, dtype=np.int64)
        self.k1 = np.asarray(k1, dtype=np.int64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.motion = None if motion is None else np.asarray(motion, dtype=np.uint8)
        self.motion_weight = float(motion_weight)
        count = len(self.k0)
        if self.motion is not None and (self.motion.ndim != 3 or len(self.motion) != count):
            raise ValueError(f"keyframe attention: motion cue {self.motion.shape} for {count} frames")
        if self.keyframes.ndim != 3 or self.k1.shape != (count,) or self.weight.shape != (count,):
            raise ValueError(
                f"keyframe attention: {self.keyframes.shape} keyframes, index arrays {self.k0.shape}/{self.k1.shape}/{self.weight.shape}"
            )
        if count and (
            min(self.k0.min(), self.k1.min()) < 0 or max(self.k0.max(), self.k1.max()) >= len(self.keyframes)
        ):
            raise ValueError(f"keyframe attention: keyframe index outside the {len(self.keyframes)} stored keyframes")
        if count and (not np.isfinite(self.weight).all() or self.weight.min() < 0 or self.weight.max() > 1):
            raise ValueError("keyframe attention: carry weights must be in [0, 1]")

    @classmethod
    def from_maps(cls, maps: AttentionMaps) -> KeyframeAttention:
        """Quantise ``maps``' keyframes to 8 bits (maps read from an attention file already are: shared, not copied)."""
        if maps.stored_form:
            keys = maps.keyframe_maps
        else:
            keys = np.empty(maps.keyframe_maps.shape, dtype=np.uint8)
            for k, keymap in enumerate(maps.keyframe_maps):  # one keyframe at a time: no float copy of them all
                keys[k] = np.clip(np.rint(keymap * np.float32(255.0)), 0, 255)
        carry = [maps.carry_weights(t) for t in range(maps.frame_count)]
        k0, k1, weight = (np.array(column) for column in zip(*carry, strict=False)) if carry else (np.zeros(0),) * 3
        return cls(keys, k0, k1, weight, maps.frame_size, maps.motion_maps, maps.motion_weight)

    def __len__(self) -> int:
        return len(self.k0)

    def analysis_map(self, t: int) -> np.ndarray:
        k0, k1, w = int(self.k0[t]), int(self.k1[t]), float(self.weight[t])
        key0 = self.keyframes[k0].astype(np.float32) / np.float32(255.0)  # as load_attention_maps scales them
        if w == 0.0:
            content = key0
        else:
            key1 = self.keyframes[k1].astype(np.float32) / np.float32(255.0)
            content = ((1.0 - w) * key0 + w * key1).astype(np.float32)
        return with_motion(content, None if self.motion is None else self.motion[t], self.motion_weight)

    def map(self, t: int) -> np.ndarray:
        amap = self.analysis_map(t)
        height, width = self.frame_size
        if amap.shape != (height, width):
            amap = np.clip(cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        return amap

    def frames(self) -> KeyframeAttentionFrames:
        return KeyframeAttentionFrames(self)


class KeyframeAttentionFrames(LazyFrames):
    """A_t of every frame as a read-only ``(T, H, W)`` stack decoded on demand; ``source`` is what it decodes."""

    def __init__(self, source: KeyframeAttention):
        super().__init__((len(source), *source.frame_size), source.map, dtype=np.float32, cache_frames=2)
        self.source = source


def control_from_maps(maps: AttentionMaps, masks: MaskFrames | np.ndarray) -> ControlTensors:
    """Control tensors of a video built streaming from its attention maps and masks.

    Attention stays as ``maps``' keyframes (8-bit) and is upsampled frame by frame; masks stay
    per-frame compressed; the per-frame sums are computed in one pass with one frame decoded at
    a time. Peak memory is a few full-size frames, whatever the video's length.
    """
    if not isinstance(masks, MaskFrames):
        masks = MaskFrames.from_array(masks)
    if (maps.frame_count, *maps.frame_size) != tuple(masks.shape):
        raise ValueError(
            f"attention maps {(maps.frame_count, *maps.frame_size)} and masks {tuple(masks.shape)} "
            f"differ in (frames, height, width){f' for {maps.video}' if maps.video else ''}"
        )
    return ControlTensors(masks=masks, attention=KeyframeAttention.from_maps(maps).frames())


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


def _check_ranges(ranges: list[tuple[int, int]], frame_count: int) -> None:
    for start, end in ranges:
        if not 0 <= start < end <= frame_count:
            raise ValueError(f"scene frame range [{start}, {end}) is empty or outside frames [0, {frame_count})")


def scene_alignment(
    alignment_per_frame: np.ndarray,
    scene_frame_ranges: list[tuple[int, int]],
    method: str = "attention_weighted",
    attention_mass: np.ndarray | None = None,
) -> np.ndarray:
    """Alignment of each scene ``[start, end)`` (start inclusive, end exclusive), float64.

    ``attention_weighted`` (primary; needs ``attention_mass`` = sum_p A_t per frame) is
    sum(a_t m_t) / sum(m_t) = pooled sum(A M) / pooled sum(A) over the scene, 0 for a scene with
    no attention. ``frame_mean`` is the plain mean of a_t over the scene's frames.
    """
    alignment = np.asarray(alignment_per_frame, dtype=np.float64)
    _check_ranges(scene_frame_ranges, alignment.shape[0])
    if method == "frame_mean":
        return np.array([alignment[s:e].mean() for s, e in scene_frame_ranges], dtype=np.float64)
    if method != "attention_weighted":
        raise ValueError(f"scene alignment method {method!r} is not one of {', '.join(SCENE_METHODS)}")
    if attention_mass is None:
        raise ValueError("attention_weighted scene alignment needs attention_mass (sum of A_t per frame)")
    mass = np.asarray(attention_mass, dtype=np.float64)
    if mass.shape != alignment.shape:
        raise ValueError(f"attention_mass has shape {mass.shape}, alignment {alignment.shape}")
    numerator = np.array([(alignment[s:e] * mass[s:e]).sum() for s, e in scene_frame_ranges])
    denominator = np.array([mass[s:e].sum() for s, e in scene_frame_ranges])
    return _ratio(numerator, denominator)


def alignment_tables(
    video_id: str, control: ControlTensors, fps: float, scenes: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-frame and per-scene alignment tables for the warehouse.

    ``scenes`` has ``scene_number``, ``start_frame``, ``end_frame`` (exclusive) and optionally
    the given ``attention_proportion``. Frames outside every scene get scene_number <NA>;
    overlapping scenes are an error (a frame must belong to one scene).
    """
    if fps <= 0:
        raise ValueError(f"video {video_id}: fps {fps} must be positive")
    missing = {"scene_number", "start_frame", "end_frame"} - set(scenes.columns)
    if missing:
        raise ValueError(f"video {video_id}: scenes table lacks columns {sorted(missing)}")
    count = control.frame_count
    ordered = scenes.sort_values("start_frame").reset_index(drop=True)
    ranges = [(int(s), int(e)) for s, e in zip(ordered["start_frame"], ordered["end_frame"], strict=False)]
    try:
        _check_ranges(ranges, count)
    except ValueError as exc:
        raise ValueError(f"video {video_id}: {exc}") from None
    for (s0, e0), (s1, _), n0, n1 in zip(
        ranges, ranges[1:], ordered["scene_number"], ordered["scene_number"][1:], strict=False
    ):
        if s1 < e0:
            raise ValueError(f"video {video_id}: scenes {n0} [{s0}, {e0}) and {n1} overlap from frame {s1}")

    product = control.product_attention_per_frame()
    mass = control.attention_mass_per_frame()
    alignment = _ratio(product, mass)
    scene_of_frame = pd.array([pd.NA] * count, dtype="Int64")
    for number, (s, e) in zip(ordered["scene_number"], ranges, strict=False):
        scene_of_frame[s:e] = int(number)
    frames_df = pd.DataFrame(
        {
            "video_id": pd.Series([str(video_id)] * count, dtype=object),
            "frame": np.arange(count, dtype=np.int64),
            "time_s": (np.arange(count, dtype=np.float64) + 0.5) / float(fps),
            "scene_number": scene_of_frame,
            "alignment": alignment,
            "attention_mass": mass,
            "mask_coverage": control.coverage_per_frame(),
        }
    )
    given = (
        pd.to_numeric(ordered["attention_proportion"], errors="coerce").to_numpy(dtype=np.float64)
        if "attention_proportion" in ordered.columns
        else np.full(len(ordered), np.nan)
    )
    scenes_df = pd.DataFrame(
        {
            "video_id": pd.Series([str(video_id)] * len(ordered), dtype=object),
            "scene_number": ordered["scene_number"].astype("int64").to_numpy(),
            "start_frame": np.array([s for s, _ in ranges], dtype=np.int64),
            "end_frame": np.array([e for _, e in ranges], dtype=np.int64),
            "alignment": scene_alignment(alignment, ranges, "attention_weighted", attention_mass=mass),
            "mean_frame_alignment": scene_alignment(alignment, ranges, "frame_mean"),
            "attention_proportion_given": given,
        }
    )
    return frames_df, scenes_df


def given_vs_computed_correlation(scenes_df: pd.DataFrame) -> float | None:
    """Pearson r between given ``attention_proportion`` and computed scene ``alignment``.

    Uses scenes where both are finite; None with fewer than 3 such scenes or when either side
    is constant (r undefined).
    """
    given = pd.to_numeric(scenes_df["attention_proportion_given"], errors="coerce").to_numpy(dtype=np.float64)
    computed = scenes_df["alignment"].to_numpy(dtype=np.float64)
    both = np.isfinite(given) & np.isfinite(computed)
    if both.sum() < 3:
        return None
    x, y = given[both], computed[both]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


# -- storage -------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _upsample_matrix(size: int, low: int) -> np.ndarray:
    """(size, low) bilinear interpolation matrix, half-pixel centres (align_corners=False)."""
    src = np.clip((np.arange(size) + 0.5) * low / size - 0.5, 0, low - 1)
    left = np.floor(src).astype(np.int64)
    right = np.minimum(left + 1, low - 1)
    weight = src - left
    matrix = np.zeros((size, low))
    matrix[np.arange(size), left] += 1 - weight
    matrix[np.arange(size), right] += weight
    return matrix


@lru_cache(maxsize=8)
def _fit_matrix(size: int, low: int) -> np.ndarray:
    return np.linalg.pinv(_upsample_matrix(size, low))


def _second_difference(x: np.ndarray) -> np.ndarray:
    return np.diff(np.diff(x, axis=-2, prepend=0), axis=-1, prepend=0)


_MAX_SEGMENT = 64  # longest run of frames stored as interpolation weights between two anchors


class _AttentionEncoder:
    """Stores anchor frames (low-res fit + residual) and expresses other frames as weights.

    Attention maps are carried between keyframes by holding or by linear interpolation, so
    most frames lie on the line between two stored frames. A frame is stored as ``(source,
    next, weight)`` when ``(1 - w) * decoded[source] + w * decoded[next]`` is within
    :data:`ATTENTION_MAX_ERROR` of it everywhere (checked against the decoded anchors, so the
    bound holds for what is read back); a held map is the special case ``w = 0``.
    """

    def __init__(self, height: int, width: int):
        low_h, low_w = max(1, -(-height // _LOWRES_FACTOR)), max(1, -(-width // _LOWRES_FACTOR))
        self.low_shape = (low_h, low_w)
        self.up_h, self.up_w = _upsample_matrix(height, low_h), _upsample_matrix(width, low_w)
        self.fit_h, self.fit_w = _fit_matrix(height, low_h), _fit_matrix(width, low_w)
        self.lowres: list[np.ndarray] = []
        self.residuals: list[np.ndarray] = []
        self.decoded: list[np.ndarray] = []

    def store(self, frame: np.ndarray) -> int:
        frame = frame.astype(np.float64)
        low = np.round(self.fit_h @ frame @ self.fit_w.T * _LOWRES_LEVELS).astype(np.int64)
        prediction = self.up_h @ (low / _LOWRES_LEVELS) @ self.up_w.T
        residual = np.round((frame - prediction) * 255.0).astype(np.int64)
        self.lowres.append(_second_difference(low))
        self.residuals.append(residual)
        self.decoded.append(np.clip(prediction + residual / 255.0, 0.0, 1.0))
        return len(self.decoded) - 1


def _on_line(start: np.ndarray, end: np.ndarray, frames: np.ndarray, weights: np.ndarray) -> bool:
    for frame, w in zip(frames, weights, strict=False):
        if np.abs((1.0 - w) * start + w * end - frame).max() > ATTENTION_MAX_ERROR:
            return False
    return True


def _encode_attention(attention: np.ndarray) -> dict[str, np.ndarray]:
    count, height, width = attention.shape
    encoder = _AttentionEncoder(height, width)
    source = np.zeros(count, dtype=np.int32)
    following = np.full(count, -1, dtype=np.int32)
    weight = np.zeros(count, dtype=np.float32)
    if count:
        anchor = 0
        source[0] = encoder.store(attention[0])
        while anchor < count - 1:
            start = encoder.decoded[source[anchor]]
            # Longest reach such that every frame between lies on the line to the original end frame.
            end = anchor + 1
            for candidate in range(anchor + 2, min(count, anchor + _MAX_SEGMENT + 1)):
                inner = np.arange(anchor + 1, candidate)
                w = (inner - anchor) / (candidate - anchor)
                if not _on_line(start, attention[candidate].astype(np.float64), attention[inner], w):
                    break
                end = candidate
            if np.abs(attention[end] - start).max() <= ATTENTION_MAX_ERROR:
                end_index = int(source[anchor])  # a held map: reuse the anchor, store nothing
            else:
                end_index = encoder.store(attention[end])
            source[end] = end_index
            inner = np.arange(anchor + 1, end)
            w = (inner - anchor) / max(1, end - anchor)
            if _on_line(start, encoder.decoded[end_index], attention[inner], w):
                source[inner], following[inner], weight[inner] = source[anchor], end_index, w
            else:  # quantisation of the end anchor broke the bound: store those frames whole
                for t in inner:
                    source[t] = encoder.store(attention[t])
            anchor = end
    low_h, low_w = encoder.low_shape
    low_stack = np.stack(encoder.lowres) if encoder.lowres else np.zeros((0, low_h, low_w), dtype=np.int64)
    res_stack = np.stack(encoder.residuals) if encoder.residuals else np.zeros((0, height, width), dtype=np.int64)
    res_dtype = np.int8 if res_stack.size == 0 or np.abs(res_stack).max() <= 127 else np.int16
    low_dtype = np.int16 if low_stack.size == 0 or np.abs(low_stack).max() < 2**15 else np.int32
    return {
        "attention_source": source,
        "attention_next": following,
        "attention_weight": weight,
        "attention_lowres_d2": low_stack.astype(low_dtype),
        "attention_residual": res_stack.astype(res_dtype),
    }


def _decode_attention(
    source: np.ndarray,
    following: np.ndarray,
    weight: np.ndarray,
    lowres_d2: np.ndarray,
    residual: np.ndarray,
    shape: tuple[int, int, int],
) -> np.ndarray:
    count, height, width = shape
    low_h, low_w = lowres_d2.shape[1:]
    up_h, up_w = _upsample_matrix(height, low_h), _upsample_matrix(width, low_w)
    stored = np.empty((len(lowres_d2), height, width), dtype=np.float32)
    for i in range(len(lowres_d2)):
        low = np.cumsum(np.cumsum(lowres_d2[i].astype(np.int64), axis=0), axis=1)
        prediction = up_h @ (low / _LOWRES_LEVELS) @ up_w.T
        stored[i] = np.clip(prediction + residual[i] / 255.0, 0.0, 1.0)
    if not count:
        return np.zeros(shape, dtype=np.float32)
    for name, index in (("frame", source), ("next-frame", following[following >= 0])):
        if index.size and (index.min() < 0 or index.max() >= len(stored)):
            raise ValueError(f"attention {name} index does not fit {len(stored)} stored frames")
    if source.shape != (count,) or following.shape != (count,) or weight.shape != (count,):
        raise ValueError(f"attention index arrays do not have {count} entries")
    frames = stored[source]
    blend = following >= 0
    if blend.any():
        w = weight[blend][:, None, None]
        frames[blend] = (1.0 - w) * stored[source[blend]] + w * stored[following[blend]]
    return frames


def save_control_tensors(path: str | os.PathLike[str], control: ControlTensors) -> Path:
    """Write control tensors compressed, atomically.

    Streamed control (from :func:`control_from_maps`): format v3, masks per frame deflated and
    attention as 8-bit keyframes with carry weights, plus the per-frame sums; a 60 s 1080x1920
    ad takes a few MB at most and about 100 MB of memory to write. Dense control: format v2,
    masks exact and attention within 1/510 (see the module docstring).
    """
    if (
        isinstance(control.attention, KeyframeAttentionFrames)
        and isinstance(control.masks, MaskFrames)
        and control.stats is not None
    ):
        source = control.attention.source
        from align_core.perception.attention.maps import encode_keyframes

        return save_npz_atomic(
            path,
            format=np.asarray(FORMAT_STREAMED),
            shape=np.asarray(control.masks.shape, dtype=np.int64),
            attention_keyframes_lzma=np.frombuffer(encode_keyframes(source.keyframes), dtype=np.uint8),
            attention_keyframe_shape=np.asarray(source.keyframes.shape, dtype=np.int64),
            attention_k0=source.k0.astype(np.int32),
            attention_k1=source.k1.astype(np.int32),
            attention_weight=source.weight,
            **{f"stat_{name}": control.stats[name] for name in _STAT_NAMES},
            **control.masks.to_arrays("mask"),
        )
    count = control.frame_count
    masks = np.asarray(control.masks, dtype=bool)
    arrays = _encode_attention(np.asarray(control.attention, dtype=np.float32))
    return save_npz_atomic(
        path,
        format=np.asarray(FORMAT),
        shape=np.asarray(masks.shape, dtype=np.int64),
        mask_bits=np.packbits(masks.reshape(count, -1), axis=1),
        **arrays,
    )


def load_control_tensors(path: str | os.PathLike[str]) -> ControlTensors:
    """Read what :func:`save_control_tensors` wrote; errors name the file.

    A v3 (streamed) file comes back lazy: ``control.masks[t]`` and ``control.attention[t]``
    decode one frame, and alignment comes from the stored per-frame sums, so reading a 60 s
    1080x1920 ad costs a few MB. A v2 (dense) file comes back as dense arrays.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            kind = str(data["format"])
            if kind == FORMAT_STREAMED:
                from align_core.perception.attention.maps import decode_keyframes

                shape = tuple(int(v) for v in data["shape"])
                key_shape = tuple(int(v) for v in data["attention_keyframe_shape"])
                keys = decode_keyframes(data["attention_keyframes_lzma"].tobytes(), key_shape)
                source = KeyframeAttention(
                    keys, data["attention_k0"], data["attention_k1"], data["attention_weight"], shape[1:]
                )
                masks = MaskFrames.from_arrays(data, "mask")
                stats = {name: np.asarray(data[f"stat_{name}"], dtype=np.float64) for name in _STAT_NAMES}
                if tuple(masks.shape) != shape or len(source) != shape[0]:
                    raise ValueError(
                        f"masks {tuple(masks.shape)} / {len(source)} attention frames do not match shape {shape}"
                    )
                return ControlTensors(masks=masks, attention=source.frames(), stats=stats)
            if kind != FORMAT:
                raise ValueError(f"format {kind!r}, expected {FORMAT!r} or {FORMAT_STREAMED!r}")
            shape = tuple(int(v) for v in data["shape"])
            count, height, width = shape
            masks = np.unpackbits(data["mask_bits"], axis=1, count=height * width).reshape(shape).astype(bool)
            attention = _decode_attention(
                data["attention_source"],
                data["attention_next"],
                data["attention_weight"],
                data["attention_lowres_d2"],
                data["attention_residual"],
                shape,
            )
    except (OSError, KeyError, ValueError, EOFError, lzma.LZMAError) as exc:
        raise ValueError(f"control tensor file {path}: cannot be read ({exc})") from exc
    return ControlTensors(masks=masks, attention=attention)
