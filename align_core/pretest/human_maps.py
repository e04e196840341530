"""Human attention maps from a pretest's cursor samples, and human alignment a_t with the product masks.

The moving-window method shows a sharp window of ``window_deg`` degrees around the cursor, so a
cursor sample says "this disk was seen", not "this pixel was fixated". A frame's map is the
in-frame samples of that frame and its ``temporal_k`` neighbours on either side, each spread by a
Gaussian with the second moment of the window's disk (``sigma = r / sqrt(2)``, ``r`` the window's
radius in pixels from the same :class:`~align_core.perception.attention.geometry.ViewingGeometry` the
attention maps use), normalised to sum 1. Frames without samples have an all-zero map and NaN
alignment.

Alignment is the model's own: maps are computed at the analysis resolution (``max_side``) and
compared with the masks' per-block coverage by
:func:`~align_core.measurement.manipulation.scaled_alignment` (at factor 1 exactly
:func:`~align_core.measurement.manipulation.alignment`, ``sum(A M) / sum(A)``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from align_core.io.arrays import save_npz_atomic
from align_core.measurement.manipulation import scaled_alignment
from align_core.measurement.saliency_metrics import cc, nss
from align_core.perception.attention.geometry import ViewingGeometry
from align_core.stimuli.plans import frame_centre_times, window_of

__all__ = [
    "HumanMapSettings",
    "VideoGrid",
    "VideoHumanAttention",
    "frame_windows",
    "grid_coverage",
    "human_alignment",
    "human_maps",
    "load_human_maps",
    "sample_counts",
    "save_human_maps",
    "scorer_card",
    "trial_alignment",
    "video_human_attention",
    "window_sigma_px",
]


@dataclass(frozen=True)
class HumanMapSettings:
    """How samples become maps: frames either side pooled, and the analysis resolution cap."""

    temporal_k: int = 1
    max_side: int = 128

    def __post_init__(self) -> None:
        if self.temporal_k < 0 or self.max_side < 8:
            raise ValueError(f"temporal_k must be >= 0 and max_side >= 8, got {self.temporal_k}, {self.max_side}")


def window_sigma_px(window_deg: float, viewing: Mapping[str, float], width_px: int, height_px: int) -> float:
    """Gaussian sigma (pixels of a ``width_px``-wide frame) matching the sharp window's disk.

    The video is shown ``screen_height_cm`` tall, so its displayed width is that times its aspect.
    """
    if not window_deg > 0:
        raise ValueError(f"window_deg must be positive, got {window_deg}")
    display_width_cm = float(viewing["screen_height_cm"]) * width_px / height_px
    geometry = ViewingGeometry(int(width_px), display_width_cm, float(viewing["distance_cm"]))
    return geometry.patch_radius_px(float(window_deg)) / math.sqrt(2.0)


@dataclass(frozen=True)
class VideoGrid:
    """The analysis grid of one video: ``factor`` source pixels per cell along each axis."""

    n_frames: int
    height: int
    width: int
    factor: int

    @classmethod
    def for_video(cls, n_frames: int, height: int, width: int, max_side: int) -> VideoGrid:
        return cls(int(n_frames), int(height), int(width), max(1, math.ceil(max(height, width) / max_side)))

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.height / self.factor), math.ceil(self.width / self.factor)

    def coverage(self, mask: np.ndarray) -> np.ndarray:
        """The mask as the analysis grid sees it: bool at factor 1, else each cell's share of product pixels."""
        mask = np.asarray(mask, dtype=bool)
        return mask if self.factor == 1 and mask.shape == (self.height, self.width) else self.pool(mask)

    def pool(self, frame: np.ndarray) -> np.ndarray:
        """A full-size ``(H, W)`` frame averaged over each cell (float32 on the grid)."""
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width):
            raise ValueError(f"a frame of {frame.shape} for a {self.width}x{self.height} video")
        h, w = self.shape
        padded = np.zeros((h * self.factor, w * self.factor), dtype=np.float32)
        padded[: self.height, : self.width] = frame
        return padded.reshape(h, self.factor, w, self.factor).mean(axis=(1, 3))


def sample_counts(grid: VideoGrid, frame_index: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float32 ``(T, h, w)``: how many in-frame samples fell in each cell of each frame."""
    h, w = grid.shape
    counts = np.zeros((grid.n_frames, h, w), dtype=np.float32)
    frame_index, x, y = (np.asarray(v, dtype=np.float64) for v in (frame_index, x, y))
    ok = np.isfinite(frame_index) & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    frames = np.clip(frame_index[ok].astype(np.int64), 0, grid.n_frames - 1)
    cols = np.clip((x[ok] * grid.width / grid.factor).astype(np.int64), 0, w - 1)
    rows = np.clip((y[ok] * grid.height / grid.factor).astype(np.int64), 0, h - 1)
    np.add.at(counts, (frames, rows, cols), 1.0)
    return counts


def human_maps(counts: np.ndarray, sigma_cells: float, temporal_k: int) -> np.ndarray:
    """float32 ``(T, h, w)`` maps summing to 1 per frame (0 where no sample within ``temporal_k`` frames)."""
    counts = np.asarray(counts, dtype=np.float32)
    pooled = counts.copy()
    for shift in range(1, min(temporal_k, len(counts) - 1) + 1):  # in place: no (T, h, w) cumsum
        pooled[shift:] += counts[:-shift]
        pooled[:-shift] += counts[shift:]
    counts = pooled
    maps = np.zeros_like(counts)
    for t in np.flatnonzero(counts.reshape(len(counts), -1).sum(axis=1) > 0):
        blurred = cv2.GaussianBlur(
            counts[t], (0, 0), sigmaX=sigma_cells, sigmaY=sigma_cells, borderType=cv2.BORDER_CONSTANT
        )
        total = float(blurred.sum(dtype=np.float64))
        maps[t] = blurred / total if total > 0 else 0.0
    return maps


def grid_coverage(masks: Sequence[np.ndarray] | np.ndarray, grid: VideoGrid) -> list[np.ndarray]:
    """Each frame's mask on the grid (:meth:`VideoGrid.coverage`), computed once per video."""
    if len(masks) != grid.n_frames:
        raise ValueError(f"{len(masks)} product masks for a video of {grid.n_frames} frames")
    return [grid.coverage(masks[t]) for t in range(grid.n_frames)]


def human_alignment(maps: np.ndarray, coverage: Sequence[np.ndarray]) -> np.ndarray:
    """a_t per frame by the model's alignment with ``coverage`` (:func:`grid_coverage`); NaN where the map is empty."""
    values = np.full(len(maps), np.nan)
    for t in range(len(maps)):
        if maps[t].any():
            values[t] = scaled_alignment(maps[t], coverage[t])
    return values


def frame_windows(n_frames: int, fps: float) -> np.ndarray:
    """Each frame's third (early/middle/late by centre time), as the model's manipulation check windows them."""
    duration = n_frames / float(fps)
    return np.array([window_of(min(t, duration), duration) for t in frame_centre_times(n_frames, fps)])


def _sigma_cells(video: Mapping[str, Any], study: Mapping[str, Any], grid: VideoGrid) -> float:
    sigma = window_sigma_px(float(study["window_deg"]), study["viewing"], grid.width, grid.height)
    return sigma / grid.factor


def trial_alignment(
    cursor: pd.DataFrame,
    video: Mapping[str, Any],
    study: Mapping[str, Any],
    masks: Sequence[np.ndarray] | np.ndarray,
    settings: HumanMapSettings = HumanMapSettings(),
) -> pd.DataFrame:
    """One row per (session, frame with samples) of one video: the participant's own a_t and window.

    ``cursor`` holds the video's ``pretest_cursor`` rows (any variants); each trial's map is built
    from that participant's samples only, so a participant's window mean is a participant-level
    measure (what the human manipulation check compares).
    """
    grid = VideoGrid.for_video(video["n_frames"], video["height"], video["width"], settings.max_side)
    return _trials(cursor, video, _sigma_cells(video, study, grid), grid_coverage(masks, grid), grid, settings)


def _trials(
    cursor: pd.DataFrame,
    video: Mapping[str, Any],
    sigma: float,
    coverage: Sequence[np.ndarray],
    grid: VideoGrid,
    settings: HumanMapSettings,
) -> pd.DataFrame:
    windows = frame_windows(grid.n_frames, float(video["fps"]))
    parts = []
    for (session_id, variant), rows in cursor[cursor["in_frame"]].groupby(["session_id", "variant"], sort=True):
        counts = sample_counts(grid, rows["frame_index"], rows["x"], rows["y"])
        values = human_alignment(human_maps(counts, sigma, settings.temporal_k), coverage)
        frames = np.flatnonzero(np.isfinite(values))
        parts.append(
            pd.DataFrame(
                {
                    "session_id": session_id,
                    "video_id": str(video["video_id"]),
                    "variant": variant,
                    "frame_index": frames,
                    "window": windows[frames],
                    "alignment": values[frames],
                }
            )
        )
    columns = ["session_id", "video_id", "variant", "frame_index", "window", "alignment"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


@dataclass
class VideoHumanAttention:
    """One video's pooled human maps and a_t per variant, and the per-trial a_t."""

    video_id: str
    grid: VideoGrid
    sigma_cells: float
    settings: HumanMapSettings
    maps: dict[str, np.ndarray]  # variant -> float32 (T, h, w), each frame sums to 1 (or is empty)
    counts: dict[str, np.ndarray]  # variant -> float32 (T, h, w) raw in-frame sample counts
    alignment: dict[str, np.ndarray]  # variant -> a_t of the pooled map (NaN: no samples)
    trials: pd.DataFrame


def video_human_attention(
    cursor: pd.DataFrame,
    video: Mapping[str, Any],
    study: Mapping[str, Any],
    masks: Sequence[np.ndarray] | np.ndarray,
    settings: HumanMapSettings = HumanMapSettings(),
) -> VideoHumanAttention:
    """Pooled maps (every participant of a variant) and per-trial alignment for one video."""
    grid = VideoGrid.for_video(video["n_frames"], video["height"], video["width"], settings.max_side)
    sigma = _sigma_cells(video, study, grid)
    coverage = grid_coverage(masks, grid)
    inside = cursor[cursor["in_frame"]]
    maps, counts, alignment = {}, {}, {}
    for variant, rows in inside.groupby("variant", sort=True):
        counts[str(variant)] = sample_counts(grid, rows["frame_index"], rows["x"], rows["y"])
        maps[str(variant)] = human_maps(counts[str(variant)], sigma, settings.temporal_k)
        alignment[str(variant)] = human_alignment(maps[str(variant)], coverage)
    trials = _trials(cursor, video, sigma, coverage, grid, settings)
    return VideoHumanAttention(str(video["video_id"]), grid, sigma, settings, maps, counts, alignment, trials)


def save_human_maps(path: str | os.PathLike[str], result: VideoHumanAttention) -> Path:
    """Write the pooled maps (float16), counts and a_t per variant in one npz, atomically."""
    arrays: dict[str, np.ndarray] = {}
    for variant in result.maps:
        arrays[f"maps__{variant}"] = result.maps[variant].astype(np.float16)
        arrays[f"counts__{variant}"] = result.counts[variant].astype(np.uint16)
        arrays[f"alignment__{variant}"] = result.alignment[variant]
    meta = {"video_id": result.video_id, "grid": asdict(result.grid), "sigma_cells": result.sigma_cells}
    meta["settings"] = asdict(result.settings)
    return save_npz_atomic(path, meta=np.asarray(json.dumps(meta)), **arrays)


def load_human_maps(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What :func:`save_human_maps` wrote: ``meta`` and ``maps``/``counts``/``alignment`` by variant."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, Any] = {"meta": json.loads(str(data["meta"])), "maps": {}, "counts": {}, "alignment": {}}
            for key in data.files:
                if "__" in key:
                    kind, variant = key.split("__", 1)
                    out[kind][variant] = np.asarray(data[key])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"human map file {path}: cannot be read ({exc})") from exc
    return out


def scorer_card(
    humans: Iterable[tuple[str, np.ndarray, np.ndarray]], model_maps: Mapping[str, Mapping[str, np.ndarray]]
) -> pd.DataFrame:
    """NSS and CC of each scorer's maps against the human maps, averaged over frames with samples.

    ``humans`` yields (video_id, counts (T,h,w), maps (T,h,w)); ``model_maps[scorer][video_id]``
    is that scorer's (T,h,w) maps on the same grid. NSS is taken at the cells the cursors visited
    (the fixation map), CC against the blurred human map (the fixation density).
    """
    rows = []
    for video_id, counts, maps in humans:
        frames = np.flatnonzero(np.asarray(counts).reshape(len(counts), -1).sum(axis=1) > 0)
        for scorer, by_video in model_maps.items():
            model = by_video.get(video_id)
            if model is None or not len(frames):
                continue
            nss_values = [nss(model[t], counts[t] > 0) for t in frames]
            cc_values = [cc(model[t], maps[t]) for t in frames]
            rows.append(
                {
                    "scorer": scorer,
                    "video_id": video_id,
                    "frames": len(frames),
                    "nss": float(np.mean(nss_values)),
                    "cc": float(np.mean(cc_values)),
                }
            )
    return pd.DataFrame(rows, columns=["scorer", "video_id", "frames", "nss", "cc"])
