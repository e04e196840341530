"""Fault suite, issue 15: odd inputs made with PyAV, each with a clear result or message.

- item 7: odd frame sizes (the writer pads to even; quality and the manipulation check compare
  like with like);
- item 9: a PNG renamed ``.mp4`` is not a video;
- extra cases: audio longer than video, variable frame rate, rotation metadata, B-frames, 10-bit.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_render import FPS, SCENES, synthetic_ad

from align_core.io.video_io import VideoError, probe_video, read_frames
from align_core.measurement.manipulation import check_rendered_variants
from align_core.measurement.quality import evaluate_variants
from align_core.stimuli.editing.render import render_variants
from align_core.stimuli.editing.render_request import StrengthMap
from align_core.stimuli.editing.salience import SalienceEditor
from align_core.stimuli.plans import plan_variants

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


def write_with_pyav(
    path: Path,
    frames: np.ndarray,
    *,
    fps: Fraction = Fraction(FPS),
    codec: str = "libx264",
    pix_fmt: str = "yuv444p",
    options: dict | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio_seconds: float | None = None,
    rotate: int | None = None,
) -> Path:
    """A real video written straight with PyAV (the platform's writer would pad or normalise it)."""
    container = av.open(str(path), "w", format="mp4")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
    stream.time_base = time_base or 1 / fps
    stream.options = options or {}
    if rotate is not None:
        stream.set_display_rotation(rotate)
    audio = container.add_stream("aac", rate=16000) if audio_seconds else None
    if audio is not None:
        audio.layout = "mono"
    for index, frame in enumerate(frames):
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture.pts = pts[index] if pts is not None else index
        for packet in stream.encode(picture):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    if audio is not None:
        samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * audio_seconds)) / 16000)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize("crop", [(159, 95), (160, 17)])
def test_odd_sizes_pass_quality_and_the_check_on_like_sizes(tmp_path: Path, crop) -> None:
    height, width = crop
    frames, masks = synthetic_ad()
    frames, masks = frames[:, :height, :width], masks[:, :height, :width]
    source = write_with_pyav(tmp_path / "odd.mp4", frames)
    probe = probe_video(source)
    assert (probe.height, probe.width) == (height, width)
    attention = np.where(masks, 0.3, 0.1).astype(np.float32)
    a = (attention * masks).sum(axis=(1, 2)) / attention.sum(axis=(1, 2))
    plans = plan_variants("odd", a, FPS, SCENES)
    result = render_variants(
        source,
        plans,
        masks,
        attention,
        SalienceEditor(),
        tmp_path / "out",
        keyframe_stride=4,
        strength_map=StrengthMap(),
    )
    rendered = probe_video(result.variant_paths["baseline"])
    assert (rendered.height, rendered.width) == (height + height % 2, width + width % 2)  # padded to even
    quality = evaluate_variants(source, result.variant_paths, plans, masks)
    assert len(quality) == len(result.variant_paths)
    report = check_rendered_variants(
        plans, source, result.variant_paths, masks, lambda frame: np.where(np.ones(frame.shape[:2]), 1.0, 0.0)
    )
    assert set(report.verdicts["variant"]) == set(result.variant_paths)


def test_a_picture_too_small_to_edit_is_refused_by_name(tmp_path: Path) -> None:
    frames, _ = synthetic_ad()
    tiny = write_with_pyav(tmp_path / "tiny.mp4", frames[:, 80:81, 30:31])
    with pytest.raises(VideoError, match=r"tiny.mp4: picture is 1x1: too small to edit"):
        probe_video(tiny)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_an_image_renamed_mp4_is_named_as_an_image(tmp_path: Path, suffix: str) -> None:
    import cv2

    frames, _ = synthetic_ad()
    image = tmp_path / f"frame{suffix}"
    cv2.imwrite(str(image), frames[0])
    fake = tmp_path / "my-ad.mp4"
    fake.write_bytes(image.read_bytes())
    kind = {".png": "PNG", ".jpg": "JPEG"}[suffix]
    with pytest.raises(VideoError, match=rf"my-ad.mp4: is a {kind} image .*not a video"):
        probe_video(fake)


def test_a_one_frame_video_is_a_still_image(tmp_path: Path) -> None:
    frames, _ = synthetic_ad()
    still = write_with_pyav(tmp_path / "still.mp4", frames[:1])
    with pytest.raises(VideoError, match="single h264 frame: a still image, not a video"):
        probe_video(still)


# ---------------------------------------------------------------------------------------------
# extra cases: audio longer than video, variable frame rate, rotation, B-frames, 10-bit
# ---------------------------------------------------------------------------------------------


def test_audio_longer_than_video_keeps_the_video_length(tmp_path: Path) -> None:
    frames, _ = synthetic_ad()  # 24 frames at 12 fps: 2 s
    source = write_with_pyav(tmp_path / "long-audio.mp4", frames, pix_fmt="yuv420p", audio_seconds=5.0)
    probe = probe_video(source)
    assert probe.frame_count == 24 and probe.duration_s == pytest.approx(2.0) and probe.has_audio
    assert len(read_frames(source)) == 24


def test_variable_frame_rate_is_refused_with_the_fix(tmp_path: Path) -> None:
    frames, _ = synthetic_ad()
    stamps = [int(i * 1000 / 12) if i < 12 else int(1000 + (i - 12) * 1000 / 4) for i in range(len(frames))]
    source = write_with_pyav(
        tmp_path / "vfr.mp4", frames, pix_fmt="yuv420p", pts=stamps, time_base=Fraction(1, 1000), options={"bf": "0"}
    )
    with pytest.raises(VideoError, match=r"vfr.mp4: has a variable frame rate .*re-encode it at a constant rate"):
        probe_video(source)


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_phone_video_is_read_upright(tmp_path: Path, rotation: int) -> None:
    frames, _ = synthetic_ad()  # stored 96 wide x 160 high
    source = write_with_pyav(tmp_path / "phone.mp4", frames, pix_fmt="yuv420p", rotate=rotation)
    probe = probe_video(source)
    assert (probe.width, probe.height, probe.rotation) == (160, 96, rotation)
    decoded = read_frames(source)
    assert decoded.shape[1:3] == (96, 160)
    stored = read_frames(write_with_pyav(tmp_path / "flat.mp4", frames, pix_fmt="yuv420p"))
    # Two separate encodes differ by codec noise only; the wrong turn differs by the picture.
    right = np.abs(decoded[0].astype(int) - np.rot90(stored[0], k=rotation // 90)).mean()
    wrong = np.abs(decoded[0].astype(int) - np.rot90(stored[0], k=rotation // 90 + 2)).mean()
    assert right < 3 and wrong > 10 * right


@pytest.mark.parametrize(("pix_fmt", "options"), [("yuv420p", {"bf": "8", "b_strategy": "0"}), ("yuv420p10le", {})])
def test_b_frames_and_10_bit_decode_in_order(tmp_path: Path, pix_fmt: str, options: dict) -> None:
    frames, _ = synthetic_ad()
    source = write_with_pyav(tmp_path / "stream.mp4", frames, pix_fmt=pix_fmt, options=options)
    probe = probe_video(source)
    assert probe.frame_count == len(frames) and probe.pix_fmt == pix_fmt
    decoded = read_frames(source).astype(int)
    assert decoded.dtype == int and decoded.shape == frames.shape
    # presentation order, not decode order: each decoded frame is closest to its own source frame
    errors = np.abs(decoded[:, None] - frames[None].astype(int)).mean(axis=(2, 3, 4))
    assert (errors.argmin(axis=1) == np.arange(len(frames))).all()
