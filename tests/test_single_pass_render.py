"""The renderer decodes the source once and feeds every variant's encoder: same frames as one pass per variant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

import align_core.stimuli.editing.render as render_module
from align_core.io.frames import LazyFrames, MaskFrames
from align_core.io.video_io import VideoWriter, probe_video, write_video
from align_core.stimuli.editing.render import render_variants
from align_core.stimuli.editing.render_request import StrengthMap
from align_core.stimuli.editing.salience import SalienceEditor
from align_core.stimuli.plans import plan_variants

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

HEIGHT, WIDTH, FPS, FRAMES = 128, 72, 12, 18
SCENES = [(0, 8), (8, FRAMES)]


def _source(path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    base = cv2.resize(rng.random((16, 14, 3)).astype(np.float32), (WIDTH + 30, HEIGHT), interpolation=cv2.INTER_CUBIC)
    frames, masks = [], []
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for t in range(FRAMES):
        frame = (255 * base[:, t : t + WIDTH]).astype(np.uint8)
        mask = (yy - 0.5 * HEIGHT) ** 2 + (xx - 20 - t) ** 2 < 14**2
        frame[mask] = (220, 110, 40)
        frames.append(frame)
        masks.append(mask)
    tone = 0.2 * np.sin(2 * np.pi * 330 * np.arange(int(16000 * FRAMES / FPS)) / 16000)
    return write_video(path, np.stack(frames), FPS, audio_pcm=(tone[None, :], 16000)), np.stack(masks)


class RecordingWriter(VideoWriter):
    """The real H.264 writer, also keeping every frame handed to it (libx264 with threads is not
    bit-reproducible run to run on this machine, so frames are compared before encoding)."""

    written: dict[str, list[np.ndarray]] = {}

    def write(self, frame: np.ndarray) -> None:
        RecordingWriter.written.setdefault(self.path.stem, []).append(np.array(frame, copy=True))
        super().write(frame)


def _render(source, plans, masks, attention, out: Path) -> tuple[object, dict[str, np.ndarray]]:
    RecordingWriter.written = {}
    result = render_variants(source, plans, masks, attention, SalienceEditor(), out, seed=5, strength_map=StrengthMap())
    return result, {name: np.stack(frames) for name, frames in RecordingWriter.written.items()}


def test_one_pass_for_seven_variants_equals_one_pass_per_variant(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(render_module, "VideoWriter", RecordingWriter)
    source, dense_masks = _source(tmp_path / "ad.mp4")
    attention = np.where(dense_masks, 0.3, 0.1).astype(np.float32)
    alignment = (attention * dense_masks).sum(axis=(1, 2)) / attention.sum(axis=(1, 2))
    plans = plan_variants("ad", alignment, FPS, SCENES)
    assert len(plans.plans) == 7
    # Lazy inputs, as the platform passes them for real-size ads (decoded one frame at a time).
    masks = MaskFrames.from_array(dense_masks)
    lazy_attention = LazyFrames(attention.shape, lambda t: attention[t])
    together, frames_together = _render(source, plans, masks, lazy_attention, tmp_path / "all")
    assert sorted(together.variant_paths) == sorted(plans.plans)
    for name, plan in plans.plans.items():
        assert probe_video(together.variant_paths[name]).frame_count == FRAMES
        alone, frames_alone = _render(
            source, dataclasses.replace(plans, plans={name: plan}), dense_masks, attention, tmp_path / name
        )
        assert frames_together[name].shape == (FRAMES, HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(frames_together[name], frames_alone[name], err_msg=name)
    # The variants really differ (the comparison above is not between seven copies of the source).
    assert np.abs(frames_together["full_boost"].astype(int) - frames_together["baseline"]).mean() > 1.0
    # Lazy and dense inputs hash the same in the lineage.
    assert together.manifest["inputs"] == alone.manifest["inputs"]
