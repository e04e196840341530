"""Speed and storage of the attention stage on the real clips in ../shared/data/videos.

1. Whole-video throughput of ``compute_attention_maps`` with the default ``feature_richness``
   scorer (decode + keyframe scoring + carrying) on ``fruit-and-vegetable-detection.mp4``
   (480x270, 101 frames) and the first 300 frames of ``intel_bottle-detection.mp4`` (640x360,
   worked at 512x288 by the default ``max_long_side=512``), at keyframe strides 1 and 6, with
   the saved file size.
2. Per-keyframe time at 576x1024 (a real bottle frame resized to portrait 576 wide x 1024 tall,
   where the original code took about 21 s per frame): at the default working resolution and
   at full resolution (``max_long_side=1024``).
3. Saved size of a 10 s, 12 fps, 288x512 sequence of real frames.

Usage::

    .venv/bin/python bench/bench_attention.py [path/to/shared/data]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2

from align_core.io.video_io import read_frame
from align_core.perception.attention import (
    AttentionConfig,
    attention_map,
    compute_attention_maps,
    make_patch_scorer,
    save_attention_maps,
)


def bench_video(path: Path, frame_limit: int | None, stride: int) -> None:
    scorer = make_patch_scorer("feature_richness")
    config = AttentionConfig(keyframe_stride=stride)
    start = time.perf_counter()
    maps = compute_attention_maps(path, [0], scorer, config, frame_limit=frame_limit)
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        size_kb = save_attention_maps(Path(tmp) / "maps.npz", maps).stat().st_size / 1e3
    frames, height, width = maps.shape
    print(
        f"{path.name:38s} {width}x{height} {frames:4d} frames stride {stride}: {seconds:6.2f} s, "
        f"{frames / seconds:6.1f} frames/s, {len(maps.keyframe_indices):3d} keyframes "
        f"({seconds / len(maps.keyframe_indices) * 1e3:5.0f} ms each incl. decode), saved {size_kb:6.1f} KB"
    )


def bench_keyframe(frame_path: Path) -> None:
    frame = read_frame(frame_path, 0)
    portrait = cv2.resize(frame[:, 140:500], (576, 1024), interpolation=cv2.INTER_CUBIC)
    scorer = make_patch_scorer("feature_richness")
    for long_side in (512, 1024):
        config = AttentionConfig(max_long_side=long_side)
        # Alternate two different frames so the scorer's last-frame cue cache never hits.
        frames = [portrait, portrait[::-1].copy()]
        attention_map(frames[1], scorer, config)  # warm-up
        repeats = 6
        start = time.perf_counter()
        for shift in range(repeats):
            attention_map(frames[shift % 2], scorer, config)
        seconds = (time.perf_counter() - start) / repeats
        print(
            f"576x1024 keyframe, working long side {long_side:4d}: {seconds * 1e3:7.1f} ms per keyframe "
            f"(original ~21 s: {21.0 / seconds:,.0f}x faster)"
        )


def bench_storage_288x512(path: Path) -> None:
    """Saved size for a 10 s, 12 fps, 288x512 video: 120 real frames (every 2nd of the 29.8 fps
    bottle clip, resized to 512x288), one scene, default stride 6 -> 20 keyframes."""
    import numpy as np

    from align_core.io.video_io import iter_frames
    from align_core.perception.attention import AttentionMaps

    scorer, config = make_patch_scorer("feature_richness"), AttentionConfig()
    keys = []
    for index, frame in enumerate(iter_frames(path, 0, 240)):
        if index % 12 == 0:  # every 6th frame of the 12 fps sequence
            keys.append(attention_map(cv2.resize(frame, (512, 288), interpolation=cv2.INTER_AREA), scorer, config))
    maps = AttentionMaps(np.stack(keys), np.arange(0, 120, 6), np.array([0]), 120, scorer.scorer_id, config.to_dict())
    with tempfile.TemporaryDirectory() as tmp:
        size_kb = save_attention_maps(Path(tmp) / "maps.npz", maps).stat().st_size / 1e3
    print(f"10 s 288x512 12 fps (120 frames, {len(keys)} keyframes): saved {size_kb:.1f} KB")


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    videos = shared / "videos"
    for stride in (1, 6):
        bench_video(videos / "fruit-and-vegetable-detection.mp4", None, stride)
        bench_video(videos / "intel_bottle-detection.mp4", 300, stride)
    bench_keyframe(videos / "intel_bottle-detection.mp4")
    bench_storage_288x512(videos / "intel_bottle-detection.mp4")


if __name__ == "__main__":
    main()
