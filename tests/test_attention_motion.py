"""The residual-motion cue: camera motion discounted, moving objects found, per-frame maps, video cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align_core.perception.attention import AttentionConfig, load_attention_maps, save_attention_maps
from align_core.perception.attention.cards import REPORT_FRAMES, load_ucf_diving, video_card_rows
from align_core.perception.attention.maps import attention_maps_from_frames
from align_core.perception.attention.motion import ResidualMotion
from align_core.perception.attention.scorers import FeatureRichnessScorer
from align_core.perception.control import KeyframeAttention

HEIGHT, WIDTH = 144, 256
SIDE = 40


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured RGB canvas (blurred noise): every region has structure for the flow to lock on."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _pan(frames: int, step_px: int) -> list[np.ndarray]:
    canvas = _texture(HEIGHT, WIDTH + step_px * frames)
    return [np.ascontiguousarray(canvas[:, i * step_px : i * step_px + WIDTH]) for i in range(frames)]


def _moving_square(frames: int, side: int = SIDE) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """A bright textured square moving 8 px per frame over a static textured background."""
    background = _texture(HEIGHT, WIDTH, seed=1) // 2
    square = _texture(side, side, seed=2) // 2 + 128
    out, corners = [], []
    for i in range(frames):
        x, y = 20 + 8 * i, 50
        frame = background.copy()
        frame[y : y + side, x : x + side] = square
        out.append(frame)
        corners.append((x, y))
    return out, corners


def _cue(frames: list[np.ndarray]) -> list[np.ndarray]:
    tracker = ResidualMotion((HEIGHT, WIDTH))
    assert tracker.store_size == (72, 128)
    return [tracker.step(frame, index == 0).astype(np.float32) / 255.0 for index, frame in enumerate(frames)]


def test_camera_pan_gives_no_motion_cue() -> None:
    """The whole frame translating (3 px per frame) is camera motion: the cue stays near zero everywhere."""
    cues = _cue(_pan(10, 3))
    assert max(float(cue.max()) for cue in cues) < 0.05
    plain_difference = np.abs(_pan(2, 3)[1].astype(float) - _pan(2, 3)[0].astype(float)).mean()
    assert plain_difference > 5  # a frame difference lights up the whole frame


def test_moving_object_on_static_background_puts_the_cue_on_it() -> None:
    frames, corners = _moving_square(10)
    cues = _cue(frames)
    assert float(cues[0].max()) == 0.0  # nothing to compare the first frame with
    for cue, (x, y) in list(zip(cues, corners, strict=True))[2:]:
        scale = cue.shape[1] / WIDTH
        peak_y, peak_x = np.unravel_index(int(np.argmax(cue)), cue.shape)
        top, bottom, left, right = (y - 12) * scale, (y + SIDE + 12) * scale, (x - 20) * scale, (x + SIDE + 12) * scale
        assert left <= peak_x <= right and top <= peak_y <= bottom
        inside = np.zeros(cue.shape, dtype=bool)
        inside[int(top) : int(bottom), int(left) : int(right)] = True
        assert cue[inside].mean() > 0.1 and cue[~inside].mean() < 0.1 * cue[inside].mean()


def test_cue_resets_at_a_scene_cut() -> None:
    frames, _ = _moving_square(6)
    tracker = ResidualMotion((HEIGHT, WIDTH))
    cues = [tracker.step(frame, index in (0, 4)) for index, frame in enumerate(frames)]
    assert cues[3].max() > 0 and cues[4].max() == 0 and cues[5].max() > 0


def test_every_frame_gets_its_own_map_and_the_control_path_reads_the_same(tmp_path: Path) -> None:
    frames, corners = _moving_square(13)  # x from 20 to 116: stays inside
    scorer = FeatureRichnessScorer()
    maps = attention_maps_from_frames(iter(frames), len(frames), (HEIGHT, WIDTH), [0], scorer, AttentionConfig())
    assert maps.motion_maps is not None and maps.motion_weight == scorer.motion_weight > 0
    still = attention_maps_from_frames(
        iter(frames), len(frames), (HEIGHT, WIDTH), [0], FeatureRichnessScorer(motion=0.0), AttentionConfig()
    )
    assert still.motion_maps is None
    for index in (2, 3, 9):  # between keyframes 0, 6 and 12: carried content alone would not follow the square
        x, y = corners[index]
        amap, carried = maps.map_at(index), still.map_at(index)
        assert np.abs(amap - carried).max() > 0.2
        peak_y, peak_x = np.unravel_index(int(np.argmax(amap)), amap.shape)
        assert x - 20 <= peak_x <= x + SIDE + 20 and y - 20 <= peak_y <= y + SIDE + 20, (index, peak_x, peak_y)
    saved = load_attention_maps(save_attention_maps(tmp_path / "maps.npz", maps, storage_scale=1.0))
    np.testing.assert_array_equal(saved.motion_maps, maps.motion_maps)
    control = KeyframeAttention.from_maps(saved)
    for index in range(len(frames)):
        np.testing.assert_array_equal(control.map(index), saved.map_at(index))


def test_ucf_card_default_beats_the_baselines_on_the_held_back_frames(shared_data: Path) -> None:
    """Gaze recorded on video (UCF Sports diving, camera panning): frames 26-51, never tuned on."""
    rows = video_card_rows(load_ucf_diving(shared_data), REPORT_FRAMES, independent=False)
    default = rows["default"]
    assert default["frames"] == 26
    for baseline in ("frame difference", "centre bias", "image part", "centre part"):
        assert default["NSS"] > rows[baseline]["NSS"] and default["CC"] > rows[baseline]["CC"], (baseline, rows)


def test_stored_video_card_shows_the_default_beating_every_other_row() -> None:
    """The stored video card (bench/bench_scorer_cards.py) is today's default's, and on UCF frames
    26-51 the default beats every baseline, part and independent verifier on NSS and CC; on NUS
    151-300 it does not lose to any of them."""
    from align_core.perception.attention.cards import INDEPENDENT
    from align_core.perception.attention.independent import scorer_cards

    card = scorer_cards()["video"]
    assert card["scorer_id"] == FeatureRichnessScorer().scorer_id
    ucf = card["ucf_sports_diving"]["rows"]
    assert set(INDEPENDENT) <= set(ucf) and ucf["default"]["frames"] == 26
    for metric in ("NSS", "CC"):
        for name, row in ucf.items():
            if name != "default":
                assert ucf["default"][metric] > row[metric], (metric, name)
        for name, row in card["nus_scene"]["rows"].items():
            if row is not None and name != "default":
                assert card["nus_scene"]["rows"]["default"][metric] >= row[metric], (metric, name)


@pytest.mark.parametrize("bad", [np.zeros((3, 5, 5), np.float32), np.zeros((2, 5, 5), np.uint8)])
def test_motion_maps_of_the_wrong_form_are_refused(bad: np.ndarray) -> None:
    frames, _ = _moving_square(3)
    maps = attention_maps_from_frames(iter(frames), 3, (HEIGHT, WIDTH), [0], FeatureRichnessScorer(), AttentionConfig())
    from align_core.perception.attention import AttentionMaps

    with pytest.raises(ValueError, match="motion"):
        AttentionMaps(
            keyframe_maps=maps.keyframe_maps,
            keyframe_indices=maps.keyframe_indices,
            scene_start_frames=[0],
            frame_count=3,
            scorer_id="x",
            config={},
            motion_maps=bad,
            motion_weight=1.0,
        )
