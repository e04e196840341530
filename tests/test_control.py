"""Control tensors: the alignment formula, scene alignment, storage size and exactness, variants."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from align_core.perception.control import (
    ATTENTION_MAX_ERROR,
    ControlTensors,
    alignment_tables,
    given_vs_computed_correlation,
    load_control_tensors,
    save_control_tensors,
    scene_alignment,
)


def _quarter_mask(frames: int, height: int, width: int) -> np.ndarray:
    masks = np.zeros((frames, height, width), dtype=bool)
    masks[:, : height // 2, : width // 2] = True
    return masks


def _smooth_stack(frames: int, height: int, width: int, keyframe_every: int = 6, seed: int = 0) -> ControlTensors:
    """Smooth attention (coarse grid, upsampled, blurred, centre bias) carried between keyframes, moving mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = np.exp(-0.5 * (((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.3 * height)) ** 2))
    attention = np.empty((frames, height, width), dtype=np.float32)
    masks = np.zeros((frames, height, width), dtype=np.uint8)
    for t in range(frames):
        if t % keyframe_every == 0:
            grid = rng.random((height // 32 + 1, width // 32 + 1)).astype(np.float32)
            key = cv2.GaussianBlur(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), width / 40)
            key = np.clip(key, 0, None) * centre
            key /= key.max()
        attention[t] = key
        cv2.ellipse(
            masks[t],
            (int(width * (0.3 + 0.4 * t / frames)), int(height * 0.6)),
            (width // 8, height // 10),
            0,
            0,
            360,
            1,
            -1,
        )
    return ControlTensors(masks=masks.astype(bool), attention=attention)


def test_uniform_attention_quarter_mask_gives_quarter() -> None:
    control = ControlTensors(masks=_quarter_mask(3, 8, 12), attention=np.full((3, 8, 12), 0.6, np.float32))
    np.testing.assert_allclose(control.alignment_per_frame(), 0.25)
    np.testing.assert_allclose(control.coverage_per_frame(), 0.25)
    c = control.control(1)
    assert c.shape == (2, 8, 12) and c.dtype == np.float32
    np.testing.assert_array_equal(c[0], control.masks[1])
    np.testing.assert_allclose(c[1], 0.6 * control.masks[1])


def test_zero_attention_frame_has_zero_alignment() -> None:
    attention = np.zeros((2, 4, 4), np.float32)
    attention[1, 0, 0] = 1.0
    control = ControlTensors(masks=_quarter_mask(2, 4, 4), attention=attention)
    np.testing.assert_array_equal(control.alignment_per_frame(), [0.0, 1.0])


def test_saliency_is_not_renormalised_per_frame() -> None:
    attention = np.zeros((2, 4, 4), np.float32)
    attention[0] = 0.8
    attention[1] = 0.2
    control = ControlTensors(masks=_quarter_mask(2, 4, 4), attention=attention)
    saliency = control.saliency
    assert saliency[0].max() / saliency[1].max() == pytest.approx(4.0)
    np.testing.assert_allclose(control.alignment_per_frame(), [0.25, 0.25])


def test_invalid_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="one \\(T, H, W\\) shape"):
        ControlTensors(masks=np.zeros((2, 4, 4), bool), attention=np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ControlTensors(masks=np.zeros((1, 2, 2), bool), attention=np.full((1, 2, 2), 1.5, np.float32))


def test_scene_alignment_weighted_and_mean() -> None:
    alignment = np.array([0.0, 1.0, 0.5, 0.5, 0.2])
    mass = np.array([3.0, 1.0, 2.0, 2.0, 0.0])
    weighted = scene_alignment(alignment, [(0, 2), (2, 4), (4, 5)], attention_mass=mass)
    np.testing.assert_allclose(weighted, [0.25, 0.5, 0.0])  # (0*3 + 1*1) / 4; no attention -> 0
    mean = scene_alignment(alignment, [(0, 2), (2, 4), (4, 5)], method="frame_mean")
    np.testing.assert_allclose(mean, [0.5, 0.5, 0.2])
    with pytest.raises(ValueError, match=r"\[3, 7\)"):
        scene_alignment(alignment, [(3, 7)], method="frame_mean")
    with pytest.raises(ValueError, match="attention_mass"):
        scene_alignment(alignment, [(0, 2)])


def test_alignment_tables_and_correlation() -> None:
    frames, height, width = 6, 4, 4
    attention = np.full((frames, height, width), 0.5, np.float32)
    masks = np.zeros((frames, height, width), bool)
    masks[0:2, :1] = True  # a = 0.25
    masks[2:4, :2] = True  # a = 0.5
    masks[4:5, :] = True  # a = 1; frame 5 is in no scene
    control = ControlTensors(masks=masks, attention=attention)
    scenes = pd.DataFrame(
        {
            "scene_number": [2, 1, 3],
            "start_frame": [2, 0, 4],
            "end_frame": [4, 2, 5],
            "attention_proportion": [0.4, 0.2, 0.9],
        }
    )
    frames_df, scenes_df = alignment_tables("7312345678901234567", control, 10.0, scenes)
    assert frames_df["video_id"].tolist() == ["7312345678901234567"] * frames
    np.testing.assert_allclose(frames_df["time_s"], (np.arange(frames) + 0.5) / 10.0)
    assert frames_df["scene_number"].tolist()[:5] == [1, 1, 2, 2, 3] and pd.isna(frames_df["scene_number"][5])
    np.testing.assert_allclose(frames_df["alignment"], [0.25, 0.25, 0.5, 0.5, 1.0, 0.0])
    np.testing.assert_allclose(frames_df["attention_mass"], 8.0)
    assert scenes_df["scene_number"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(scenes_df["alignment"], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(scenes_df["mean_frame_alignment"], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(scenes_df["attention_proportion_given"], [0.2, 0.4, 0.9])
    r = given_vs_computed_correlation(scenes_df)
    assert r == pytest.approx(np.corrcoef([0.2, 0.4, 0.9], [0.25, 0.5, 1.0])[0, 1])
    assert given_vs_computed_correlation(scenes_df.iloc[:2]) is None

    _, no_given = alignment_tables("v1", control, 10.0, scenes.drop(columns="attention_proportion"))
    assert no_given["attention_proportion_given"].isna().all()
    assert given_vs_computed_correlation(no_given) is None
    overlapping = pd.DataFrame({"scene_number": [1, 2], "start_frame": [0, 1], "end_frame": [2, 3]})
    with pytest.raises(ValueError, match="v1: scenes 1 \\[0, 2\\) and 2 overlap"):
        alignment_tables("v1", control, 10.0, overlapping)


def test_storage_round_trip_exact_masks_bounded_attention(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    control = _smooth_stack(14, 37, 53)  # sizes not multiples of 8 or 4
    noisy = control.attention.copy()
    noisy[3] = rng.random(noisy[3].shape, dtype=np.float32)  # a rough frame: large residuals
    noisy[9:] = 0.0  # no attention at all
    control = ControlTensors(masks=control.masks, attention=noisy)
    loaded = load_control_tensors(save_control_tensors(tmp_path / "c.npz", control))
    np.testing.assert_array_equal(loaded.masks, control.masks)
    error = np.abs(loaded.attention - control.attention).max()
    assert error <= ATTENTION_MAX_ERROR + 1e-6 and error < 1 / 255


def test_storage_size_under_target_on_realistic_stack(tmp_path: Path) -> None:
    """10 s at 12 fps, 288x512, keyframes every 6 frames: well under 0.5 MB (was ~10 MB)."""
    control = _smooth_stack(120, 288, 512)
    path = save_control_tensors(tmp_path / "c.npz", control)
    assert path.stat().st_size < 250_000
    loaded = load_control_tensors(path)
    np.testing.assert_array_equal(loaded.masks, control.masks)
    assert np.abs(loaded.attention - control.attention).max() <= ATTENTION_MAX_ERROR + 1e-6
    np.testing.assert_allclose(loaded.alignment_per_frame(), control.alignment_per_frame(), atol=2e-3)


def test_unreadable_control_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="broken.npz"):
        load_control_tensors(bad)


def test_linearly_carried_maps_store_as_weights(tmp_path):
    """Maps interpolated between keyframes (the attention stage's carry) cost almost nothing."""
    from align_core.perception.control import (
        ATTENTION_MAX_ERROR,
        ControlTensors,
        load_control_tensors,
        save_control_tensors,
    )

    height, width, stride, count = 128, 72, 6, 61
    yy, xx = np.mgrid[0:height, 0:width]
    keys = {}
    for k in range(0, count, stride):
        cy, cx = 30 + k, 20 + k / 2
        keys[k] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 15.0**2)).astype(np.float32)
    frames = np.empty((count, height, width), np.float32)
    for t in range(count):
        k0 = (t // stride) * stride
        k1 = min(k0 + stride, max(keys))
        w = 0.0 if k1 == k0 else (t - k0) / (k1 - k0)
        frames[t] = (1 - w) * keys[k0] + w * keys[k1]
    control = ControlTensors(masks=np.zeros_like(frames, dtype=bool), attention=frames)
    path = save_control_tensors(tmp_path / "c.npz", control)
    back = load_control_tensors(path)
    assert np.abs(back.attention - frames).max() <= ATTENTION_MAX_ERROR + 1e-6
    with np.load(path) as data:
        stored = len(data["attention_residual"])
    assert stored <= len(keys) + 1  # only the keyframes are stored whole
