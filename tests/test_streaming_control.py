"""Real-size memory path: compressed mask frames, lazy control tensors, flat memory with length."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from align_core.io.frames import MaskFrames
from align_core.perception.attention import AttentionMaps, load_attention_maps, save_attention_maps
from align_core.perception.control import ControlTensors, control_from_maps, load_control_tensors, save_control_tensors
from align_core.stimuli.plans import plan_variants

FRAME = (240, 432)  # (H, W) of the "video"
ANALYSIS = (60, 108)  # keyframe maps' size (analysis resolution, smaller than the frame)


def _maps(frames: int, stride: int = 6, seed: int = 0) -> AttentionMaps:
    """Smooth keyframe maps at the analysis size for a two-scene video of ``frames`` frames."""
    rng = np.random.default_rng(seed)
    cut = frames // 2
    keys = sorted(set(range(0, cut, stride)) | set(range(cut, frames, stride)))
    maps = []
    for _ in keys:
        low = rng.random((4, 6)).astype(np.float32)
        amap = cv2.resize(low, ANALYSIS[::-1], interpolation=cv2.INTER_CUBIC)
        amap = (amap - amap.min()) / (amap.max() - amap.min())
        maps.append(amap.astype(np.float32))
    return AttentionMaps(
        keyframe_maps=np.stack(maps),
        keyframe_indices=np.array(keys),
        scene_start_frames=np.array([0, cut]),
        frame_count=frames,
        scorer_id="test",
        config={},
        frame_size=FRAME,
    )


def _masks(frames: int) -> MaskFrames:
    """A moving disc, absent in the first 5 frames (empty masks stay empty)."""
    store = MaskFrames(*FRAME)
    yy, xx = np.mgrid[: FRAME[0], : FRAME[1]]
    for t in range(frames):
        cx, cy = 60 + (t * 3) % 300, 120
        store.append(((xx - cx) ** 2 + (yy - cy) ** 2 < 40**2) & (t >= 5))
    return store


def test_mask_frames_round_trip_exact_and_small(tmp_path) -> None:
    rng = np.random.default_rng(1)
    dense = rng.random((7, 33, 45)) > 0.7  # odd sizes: bit padding per frame
    dense[2] = False
    store = MaskFrames.from_array(dense)
    assert store.shape == (7, 33, 45) and len(store) == 7
    np.testing.assert_array_equal(np.asarray(store), dense)
    np.testing.assert_array_equal(store[-1], dense[-1])
    np.testing.assert_allclose(store.coverage_per_frame(), dense.reshape(7, -1).mean(axis=1))
    assert store.any_per_frame().tolist() == [bool(m.any()) for m in dense]
    np.savez(tmp_path / "m.npz", **store.to_arrays("mask"))
    with np.load(tmp_path / "m.npz") as data:
        back = MaskFrames.from_arrays(data, "mask")
    np.testing.assert_array_equal(np.asarray(back), dense)
    blob_mask = _masks(40)
    assert blob_mask.compressed_bytes() < 40 * FRAME[0] * FRAME[1] / 8 / 10  # far below even packed bits
    with pytest.raises(ValueError, match="mask frame 40"):
        blob_mask.append(np.zeros((3, 3), bool))


def test_lazy_reader_returns_exactly_the_stored_values(tmp_path) -> None:
    frames = 30
    saved = save_attention_maps(tmp_path / "attention.npz", _maps(frames))
    maps = load_attention_maps(saved)
    masks = _masks(frames)
    control = control_from_maps(maps, masks)
    path = save_control_tensors(tmp_path / "control.npz", control)
    loaded = load_control_tensors(path)
    assert loaded.is_lazy and tuple(loaded.attention.shape) == (frames, *FRAME)
    dense_a = np.empty((frames, *FRAME), np.float32)
    for t in range(frames):
        a_t = loaded.attention[t]
        np.testing.assert_array_equal(a_t, maps.map_at(t))  # bit for bit what the attention file holds
        np.testing.assert_array_equal(loaded.masks[t], masks[t])
        dense_a[t] = a_t
    # The stored per-frame sums are those of the decoded frames.
    dense = ControlTensors(masks=np.asarray(masks), attention=dense_a)
    np.testing.assert_allclose(loaded.alignment_per_frame(), dense.alignment_per_frame(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loaded.attention_mass_per_frame(), dense.attention_mass_per_frame(), rtol=1e-12)
    np.testing.assert_array_equal(loaded.coverage_per_frame(), dense.coverage_per_frame())
    np.testing.assert_array_equal(loaded.control(7), dense.control(7))
    assert loaded.alignment_per_frame()[:5].tolist() == [0.0] * 5  # no product: no alignment
    # Frames handed out are copies: writing into one never changes what the reader returns next.
    first = loaded.attention[3]
    first[:] = 0.0
    np.testing.assert_array_equal(loaded.attention[3], maps.map_at(3))


def test_lazy_control_rejects_a_damaged_file(tmp_path) -> None:
    control = control_from_maps(_maps(12), _masks(12))
    path = save_control_tensors(tmp_path / "control.npz", control)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["mask_offsets"] = arrays["mask_offsets"][:-1]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz"):
        load_control_tensors(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="differ"):
        control_from_maps(_maps(12), _masks(13))


def _control_stage_peak(tmp_path, frames: int) -> int:
    """Peak traced bytes of the control + plans stages on a video of ``frames`` frames."""
    maps = load_attention_maps(save_attention_maps(tmp_path / f"a{frames}.npz", _maps(frames)))
    masks = _masks(frames)
    tracemalloc.start()
    tracemalloc.reset_peak()
    control = control_from_maps(maps, masks)  # streams every frame once for the per-frame sums
    path = save_control_tensors(tmp_path / f"c{frames}.npz", control)
    loaded = load_control_tensors(path)
    plan_variants("v", loaded.alignment_per_frame(), 30.0)
    for t in range(0, frames, 7):  # what the renderer and the check do: one frame at a time
        loaded.control(t)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_control_stage_memory_does_not_grow_with_length(tmp_path) -> None:
    short, long = 40, 160
    peak_short = _control_stage_peak(tmp_path, short)
    peak_long = _control_stage_peak(tmp_path, long)
    dense_long = long * FRAME[0] * FRAME[1] * 4  # one dense float32 attention stack of the long video
    assert peak_long < dense_long / 5, (peak_long, dense_long)
    # 4x the frames: the peak may grow by the per-frame bookkeeping (sums, compressed masks), not by frames.
    assert peak_long < 1.25 * peak_short + 512 * 1024, (peak_short, peak_long)


def test_provided_masks_written_per_frame_are_segmented_without_a_dense_stack(tmp_path) -> None:
    """A long ad's provided masks can be stored per frame; segment_video gives the same masks back."""
    from align_core.io.arrays import save_npz_atomic
    from align_core.io.video_io import write_video
    from align_core.perception.masks import make_segmenter, segment_video

    frames = 9
    masks = _masks(frames)
    video = np.zeros((frames, *FRAME, 3), np.uint8)
    path = write_video(tmp_path / "ad.mp4", video, 30)
    mask_file = save_npz_atomic(tmp_path / "ad_masks.npz", **masks.to_arrays("mask"))
    result = segment_video(path, "bottle", make_segmenter("provided", mask_path=mask_file), batch_size=4)
    assert isinstance(result.masks, MaskFrames)
    np.testing.assert_array_equal(np.asarray(result.masks), np.asarray(masks))
    np.testing.assert_allclose(result.coverage, masks.coverage_per_frame())
