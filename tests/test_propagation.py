"""Flow propagation: edits follow the motion, never cross a cut, and cost little warping error."""

from __future__ import annotations

import cv2
import numpy as np

from align_core.measurement.quality import sequence_warping_error
from align_core.stimuli.editing.propagation import (
    FlowPropagator,
    iter_segments,
    keyframe_indices,
    propagate_edits,
)


def textured_pan(frames: int, height: int, width: int, dx: int = 3, seed: int = 0) -> np.ndarray:
    """A textured pattern whose content moves RIGHT by ``dx`` pixels per frame."""
    rng = np.random.default_rng(seed)
    wide = width + dx * frames + 8
    base = cv2.resize(
        rng.random((height // 4 + 1, wide // 4 + 1, 3)).astype(np.float32),
        (wide, height),
        interpolation=cv2.INTER_CUBIC,
    )
    fine = cv2.GaussianBlur(rng.random((height, wide, 3)).astype(np.float32), (0, 0), 1.0)
    big = np.clip(255 * (0.6 * base + 0.4 * fine), 0, 255).astype(np.uint8)
    return np.stack([big[:, dx * (frames - t) : dx * (frames - t) + width] for t in range(frames)])


def edited_columns(edited: np.ndarray, original: np.ndarray) -> np.ndarray:
    return np.nonzero(np.abs(edited.astype(int) - original).sum(axis=(0, 2)) > 200)[0]


def test_keyframes_are_scene_relative() -> None:
    assert keyframe_indices([(0, 10), (10, 13), (13, 30)], 8).tolist() == [0, 8, 10, 13, 21, 29]


def test_segments_never_cross_a_cut_and_hold_a_bounded_window() -> None:
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(12)]
    segments = list(iter_segments(iter(frames), [(0, 5), (5, 12)], 4))
    spans = [(s.scene_index, s.start, s.stop, s.next_key) for s in segments]
    assert spans == [(0, 0, 4, 4), (0, 4, 5, None), (1, 5, 9, 9), (1, 9, 12, None)]
    assert max(len(s.frames) for s in segments) <= 4


def test_edit_follows_the_motion_from_the_previous_keyframe() -> None:
    frames = textured_pan(8, 96, 128, dx=3)
    marked = frames[0].copy()
    marked[30:60, 40:50] = 255  # the object at keyframe 0 occupies columns 40..49
    out = list(propagate_edits(iter(frames), [(0, 8)], 10, {0: marked}))
    # Content moves right 3 px/frame: at frame 5 the object is at 55..64 (+15 px), not at 25..34.
    columns = edited_columns(out[5], frames[5])
    assert columns.min() >= 54 and columns.max() <= 65 and len(columns) >= 9, columns


def test_edit_blends_from_both_keyframes_and_matches_the_motion() -> None:
    frames = textured_pan(11, 96, 128, dx=3)
    first, last = frames[0].copy(), frames[10].copy()
    first[30:60, 40:50] = 255
    last[30:60, 70:80] = 255  # the same object, 30 px later
    out = list(propagate_edits(iter(frames), [(0, 11)], 10, {0: first, 10: last}))
    columns = edited_columns(out[5], frames[5])
    assert columns.min() >= 54 and columns.max() <= 65, columns


def test_no_propagation_across_a_scene_cut() -> None:
    frames = textured_pan(10, 64, 96)
    frames[5:] = textured_pan(5, 64, 96, seed=7)  # a cut at frame 5
    edits = {k: frames[k].copy() for k in (0, 4, 5, 9)}
    edits[0][:] = 255  # only scene 0's first keyframe is edited
    edits[5] = frames[5].copy()
    out = list(propagate_edits(iter(frames), [(0, 5), (5, 10)], 4, edits))
    for t in range(5, 10):
        np.testing.assert_array_equal(out[t], frames[t])  # scene 1 untouched by scene 0's edit
    assert np.abs(out[2].astype(int) - frames[2]).mean() > 10


def test_disallowed_pixels_are_copied_from_the_original() -> None:
    frames = textured_pan(6, 64, 96)
    edit = np.clip(frames[0].astype(int) + 40, 0, 255).astype(np.uint8)
    allowed = np.zeros((64, 96), bool)
    allowed[:, 48:] = True
    out = list(propagate_edits(iter(frames), [(0, 6)], 8, {0: edit}, allowed=lambda _t: allowed))
    for t in range(6):
        np.testing.assert_array_equal(out[t][:, :48], frames[t][:, :48])


def test_warping_error_of_a_propagated_edit_is_close_to_the_pan_own() -> None:
    frames = textured_pan(9, 128, 160, dx=3)

    # A smooth, low-frequency edit (a colour grade) on both keyframes.
    def grade(frame: np.ndarray) -> np.ndarray:
        return np.clip(frame.astype(np.float32) * [1.1, 0.95, 0.8] + 10, 0, 255).astype(np.uint8)

    out = np.stack(list(propagate_edits(iter(frames), [(0, 9)], 8, lambda _i, f: grade(f))))
    propagator = FlowPropagator()
    own = sequence_warping_error(list(frames), propagator=propagator)
    edited = sequence_warping_error(list(out), list(frames), propagator=propagator)
    assert own < 1.0
    assert edited - own < 1.0, (own, edited)  # the original research code had 18 here
