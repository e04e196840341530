"""Bytes per video of stored control tensors vs raw float32, on realistic smooth stacks.

Realistic here means what the attention and mask stages produce: attention maps that are smooth
(patch scores on a coarse grid, upsampled and blurred, times a centre bias, peak 1) and carried
between keyframes every 6 frames, and a product mask that moves across the frame (an ellipse
drifting left to right, gone for a few frames). Run::

    .venv/bin/python bench/bench_control.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align_core.perception.control import ControlTensors, load_control_tensors, save_control_tensors  # noqa: E402


def realistic_stack(frames: int, height: int, width: int, keyframe_every: int = 6, seed: int = 0) -> ControlTensors:
    """Smooth attention carried between keyframes plus a moving product mask."""
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
        if not frames // 2 <= t < frames // 2 + 4:  # product off screen for a few frames
            centre_xy = (int(width * (0.3 + 0.4 * t / frames)), int(height * 0.6))
            cv2.ellipse(masks[t], centre_xy, (width // 8, height // 10), 0, 0, 360, 1, -1)
    return ControlTensors(masks=masks.astype(bool), attention=attention)


def main() -> None:
    print(
        f"{'frames x H x W':>18} {'raw float32 [M,A]':>18} {'stored':>10} {'ratio':>7} {'save s':>7} {'load s':>7} {'max err*510':>11}"
    )
    for frames, height, width in ((120, 288, 512), (300, 360, 640)):
        control = realistic_stack(frames, height, width)
        raw = control.attention.nbytes * 2  # the original code kept both channels as float32
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "control.npz"
            start = time.perf_counter()
            save_control_tensors(path, control)
            saved = time.perf_counter() - start
            start = time.perf_counter()
            loaded = load_control_tensors(path)
            load_s = time.perf_counter() - start
            size = path.stat().st_size
        assert np.array_equal(loaded.masks, control.masks)
        err = float(np.abs(loaded.attention - control.attention).max())
        print(
            f"{frames:>5} x {height} x {width:<4} {raw:>18,} {size:>10,} {raw / size:>6.0f}x {saved:>7.2f} {load_s:>7.2f} {err * 510:>11.3f}"
        )


if __name__ == "__main__":
    main()
