"""The quality stage's frame sample and analysis resolution (align_core.measurement.frame_sampling)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from align_core.measurement.frame_sampling import (
    FrameSample,
    analysis_factor,
    downscale,
    downscale_mask,
    full_blocks,
    sample_frames,
    segments,
    stride_for,
)
from align_core.measurement.manipulation import alignment, scaled_alignment
from align_core.stimuli.plans import plan_variants


def _plans(frame_count: int, fps: float, scenes: list[tuple[int, int]]):
    return plan_variants("ad_s", np.full(frame_count, 0.3), fps, scenes)


@pytest.mark.parametrize("stride", [1, 3, 8, 30, 1000])
def test_the_sample_holds_the_first_and_last_frame_of_every_scene_and_window_and_no_gap_exceeds_the_stride(
    stride: int,
) -> None:
    # a 60 s ad at 30 fps cut every 5 s, with a cut that does not fall on a window boundary
    count, fps = 1800, 30.0
    scenes = [(a, min(a + 150, count)) for a in range(0, count, 150)]
    scenes[3:5] = [(450, 617), (617, 750)]
    plans = _plans(count, fps, scenes)
    frames = sample_frames(count, plans.scene_ranges, plans.frame_windows, stride)
    chosen = set(frames.tolist())
    windows = np.asarray(plans.frame_windows)
    for start, stop in plans.scene_ranges:
        assert {start, stop - 1} <= chosen
    for window in ("early", "middle", "late"):
        where = np.flatnonzero(windows == window)
        assert {int(where[0]), int(where[-1])} <= chosen, window
    assert frames[0] == 0 and frames[-1] == count - 1
    assert np.diff(frames).max() <= stride
    assert len(frames) <= count // stride + 2 * len(segments(count, plans.scene_ranges, plans.frame_windows)) + 1
    if stride == 1:
        assert len(frames) == count


def test_segments_split_scenes_at_window_boundaries() -> None:
    plans = _plans(12, 1.0, [(0, 5), (5, 12)])  # windows: frames 0-3 early, 4-7 middle, 8-11 late
    assert segments(12, plans.scene_ranges, plans.frame_windows) == [(0, 4), (4, 5), (5, 8), (8, 12)]
    assert sample_frames(12, plans.scene_ranges, plans.frame_windows, 3).tolist() == [0, 3, 4, 5, 7, 8, 11]


def test_the_stride_comes_from_the_frame_budget() -> None:
    assert stride_for(1800, 240) == 8
    assert stride_for(120, 240) == 1
    assert stride_for(120, 60, min_stride=2) == 2 and stride_for(1800, 60, min_stride=2) == 30
    assert stride_for(1800, 0, min_stride=2) == 2  # no budget: the minimum stride
    plans = _plans(1800, 30.0, [(0, 900), (900, 1800)])
    sample = FrameSample.build(1800, plans.scene_ranges, plans.frame_windows, 240)
    assert sample.stride == 8 and not sample.every_frame and "of 1800 frames" in sample.describe()
    small = _plans(48, 12.0, [(0, 20), (20, 48)])
    assert FrameSample.build(48, small.scene_ranges, small.frame_windows, 240).every_frame


def test_analysis_factor_and_block_means() -> None:
    assert analysis_factor(1920, 1080, 640) == 3 and analysis_factor(1080, 1920, 960) == 2
    assert (
        analysis_factor(512, 288, 640) == 1
        and analysis_factor(1920, 1080, None) == 1
        and analysis_factor(1920, 1080, 0) == 1
    )
    image = np.arange(7 * 9 * 3, dtype=np.float32).reshape(7, 9, 3)
    small = downscale(image, 3)
    assert small.shape == (2, 3, 3)
    assert np.allclose(small[1, 2], image[3:6, 6:9].mean(axis=(0, 1)))
    assert downscale(image, 1) is image  # identity at small size, bit for bit
    mask = np.zeros((6, 6), bool)
    mask[:3, :2] = True
    coverage = downscale_mask(mask, 3)
    assert coverage[0, 0] == pytest.approx(6 / 9) and coverage[1, 1] == 0
    assert not full_blocks(coverage).any() and full_blocks(downscale_mask(~mask, 3)).sum() == 3
    assert downscale_mask(mask, 1) is not None and downscale_mask(mask, 1).dtype == bool


def test_alignment_at_the_analysis_resolution_matches_full_resolution_on_a_smooth_map() -> None:
    height, width = 192, 108
    yy, xx = np.mgrid[0:height, 0:width]
    attention = np.exp(-(((yy - 80) / 40.0) ** 2 + ((xx - 50) / 30.0) ** 2)).astype(np.float32)
    mask = ((yy - 95) ** 2 / 30.0**2 + (xx - 41) ** 2 / 17.0**2) < 1  # edges not on block boundaries
    full = alignment(attention, mask)
    assert scaled_alignment(attention, mask) == pytest.approx(full, rel=1e-6)  # factor 1: the same quantity
    for factor in (2, 3, 4):
        small = cv2.resize(attention, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
        assert scaled_alignment(small, downscale_mask(mask, factor)) == pytest.approx(full, abs=0.01), factor
