"""What one render is asked to do: the arguments of :func:`~align_core.stimuli.editing.render.render_variants`,
with their defaults resolved and checked against the source file once, before any frame is decoded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from align_core.io.video_io import VideoProbe, probe_video
from align_core.stimuli.editing.base import KeyframeEditor
from align_core.stimuli.editing.propagation import FlowPropagator, keyframe_indices
from align_core.stimuli.plans import VariantPlan, VariantPlans

__all__ = [
    "VARIANT_CRF",
    "RenderRequest",
    "StrengthMap",
    "auto_encoder_preset",
    "propagation_ranges",
]

#: x264 CRF of every variant. Protected pixels are identical in every variant before encoding;
#: after it they differ only by how differently the encoder codes them beside different edits.
#: At CRF 18 that left 5 of 54 demo rows at 39.0-39.96 dB against baseline inside protected
#: regions (the stimulus floor is 40 dB); CRF 16 quantises 1.26x finer (files ~25 % larger).
VARIANT_CRF = 16


@dataclass(frozen=True)
class StrengthMap:
    """Editor strength needed for a relative alignment change, per kind.

    Tables give the achieved ``log(a'/a)`` at a few strengths (monotone); the strength for a
    target is interpolated. The default tables are a documented prior (strength 1 doubles or
    halves the product's share); :func:`align_core.measurement.manipulation.calibrate_strength_map` replaces
    them with values measured on the video's keyframes with the checking attention function.
    """

    boost_strengths: tuple[float, ...] = (0.0, 1.0)
    boost_log_ratio: tuple[float, ...] = (0.0, math.log(2.0))
    reduce_strengths: tuple[float, ...] = (0.0, 1.0)
    reduce_log_ratio: tuple[float, ...] = (0.0, math.log(0.5))
    source: str = "default prior: strength 1 doubles (boost) or halves (reduce) the product's share"

    def strength_for(self, kind: str, original: float, target: float) -> float:
        """Strength in [0, 1] expected to move alignment from ``original`` to ``target``."""
        if kind == "identity" or original <= 1e-9 or target <= 0 or abs(target - original) < 1e-12:
            return 0.0
        need = math.log(target / original)
        if kind == "boost":
            strengths, ratios = np.asarray(self.boost_strengths), np.asarray(self.boost_log_ratio)
        elif kind == "reduce":
            strengths, ratios = np.asarray(self.reduce_strengths), -np.asarray(self.reduce_log_ratio)
            need = -need
        else:
            raise ValueError(f"no strength mapping for kind {kind!r}")
        ratios = np.maximum.accumulate(ratios)  # enforce monotone for interpolation
        if need <= 0:
            return 0.0
        if need >= ratios[-1]:
            return 1.0
        return float(np.clip(np.interp(need, ratios, strengths), 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_encoder_preset(width: int, height: int) -> str:
    """x264 preset for a frame size: ``veryfast`` below one megapixel, ``superfast`` from there.

    At one CRF both target the same quality; at 1080x1920 superfast takes about 60 % of
    veryfast's encoding time for files about 40 % larger, and seven variants plus the
    comparison grid are encoded per frame (``bench/bench_real_size.py`` measures it).
    """
    return "veryfast" if width * height < 1_000_000 else "superfast"


def propagation_ranges(plans: VariantPlans) -> tuple[tuple[int, int], ...]:
    """Scenes split where the timing window changes: the units keyframes and propagation stay inside.

    A timing variant's edit switches on at its window's first frame; with a keyframe there and no
    propagation across the boundary, the switch happens exactly where the plan puts it instead of
    fading in and out over a keyframe interval on both sides.
    """
    windows = plans.frame_windows
    ranges: list[tuple[int, int]] = []
    for start, stop in plans.scene_ranges:
        current = start
        for index in range(start + 1, stop):
            if windows[index] != windows[index - 1]:
                ranges.append((current, index))
                current = index
        ranges.append((current, stop))
    return tuple(ranges)


@dataclass(frozen=True)
class RenderRequest:
    """One render, resolved: the source's probe, the effective keyframe stride and placement, the
    encoder preset and the placebo margin in pixels. Build it with :meth:`resolve`."""

    video_path: Path
    probe: VideoProbe
    plans: VariantPlans
    masks: Any
    attention: Any
    editor: KeyframeEditor
    output_dir: Path
    seed: int
    strength_map: StrengthMap
    propagator: FlowPropagator
    edit_every_frame: bool
    keyframe_stride: int  # 1 when every frame is edited
    requested_stride: int
    units: tuple[tuple[int, int], ...]
    keyframes: np.ndarray
    placebo_margin: float
    margin_px: int
    preset: str
    protect: Any
    protect_guard_px: int
    contact_frames: int
    comparison_scale: float
    comparison_max_side: int
    extra_lineage: Mapping[str, Any] | None

    @classmethod
    def resolve(
        cls,
        video_path: str | os.PathLike[str],
        plans: VariantPlans,
        masks: Any,
        attention: Any,
        editor: KeyframeEditor,
        output_dir: str | os.PathLike[str],
        *,
        keyframe_stride: int,
        strength_map: StrengthMap | None,
        placebo_margin: float,
        propagator: FlowPropagator | None,
        edit_every_frame: bool | None,
        encoder_preset: str,
        seed: int,
        protect: Any,
        protect_guard_px: int,
        contact_frames: int,
        comparison_scale: float,
        comparison_max_side: int,
        extra_lineage: Mapping[str, Any] | None,
    ) -> RenderRequest:
        """Probe the source, check the inputs' sizes against it and fill in every default."""
        video_path = Path(video_path)
        probe = probe_video(video_path)
        _check_sizes(video_path, probe, plans, masks, attention)
        every_frame = editor.propagation == "every_frame" if edit_every_frame is None else edit_every_frame
        stride = 1 if every_frame else keyframe_stride
        units = propagation_ranges(plans)
        preset = auto_encoder_preset(probe.width, probe.height) if encoder_preset == "auto" else encoder_preset
        return cls(
            video_path=video_path,
            probe=probe,
            plans=plans,
            masks=masks,
            attention=attention,
            editor=editor,
            output_dir=Path(output_dir),
            strength_map=strength_map or StrengthMap(),
            propagator=propagator or FlowPropagator(),
            edit_every_frame=every_frame,
            keyframe_stride=stride,
            requested_stride=keyframe_stride,
            units=units,
            keyframes=keyframe_indices(units, stride),
            placebo_margin=placebo_margin,
            margin_px=int(round(placebo_margin * min(probe.height, probe.width))),
            preset=preset,
            seed=seed,
            protect=protect,
            protect_guard_px=protect_guard_px,
            contact_frames=contact_frames,
            comparison_scale=comparison_scale,
            comparison_max_side=comparison_max_side,
            extra_lineage=extra_lineage,
        )

    @property
    def variant_plans(self) -> dict[str, VariantPlan]:
        return dict(self.plans.plans)

    @property
    def names(self) -> list[str]:
        """The variants, in the plans' order (the order of every output and manifest entry)."""
        return list(self.plans.plans)

    @property
    def frame_count(self) -> int:
        return self.probe.frame_count

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the source."""
        return self.probe.height, self.probe.width


def _check_sizes(video_path: Path, probe: VideoProbe, plans: VariantPlans, masks: Any, attention: Any) -> None:
    count, height, width = probe.frame_count, probe.height, probe.width
    if plans.frame_count != count:
        raise ValueError(
            f"video {video_path}: plan {plans.video_id} has {plans.frame_count} frames, the file has {count}"
        )
    if tuple(masks.shape) != (count, height, width) or tuple(attention.shape) != (count, height, width):
        raise ValueError(
            f"video {video_path}: masks {tuple(masks.shape)} / attention {tuple(attention.shape)} "
            f"must be ({count}, {height}, {width})"
        )
