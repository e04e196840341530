"""Video I/O: H.264 with audio, streaming reads, clear errors, atomic writes."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from align_core.io.atomic import atomic_path
from align_core.io.video_io import VideoError, iter_frames, probe_video, read_frames, write_video


def tone(seconds: float, rate: int = 22050) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None], rate


def ramp(n: int, h: int = 64, w: int = 48) -> list[np.ndarray]:
    return [np.full((h, w, 3), 10 + 8 * i, np.uint8) for i in range(n)]


def test_h264_with_audio_round_trip(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", ramp(24), 12, audio_pcm=tone(2.0))
    probe = probe_video(path)
    assert (probe.video_codec, probe.width, probe.height, probe.frame_count) == ("h264", 48, 64, 24)
    assert probe.fps == 12 and probe.duration_s == pytest.approx(2.0)
    assert probe.has_audio and probe.audio_codec == "aac"
    frames = read_frames(path)
    assert frames.shape == (24, 64, 48, 3)
    assert np.abs(frames[:, 20:40, 10:30].mean(axis=(1, 2, 3)) - (10 + 8 * np.arange(24))).max() < 3
    # OpenCV (what many researchers use) reads it too.
    assert int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) == 24


def test_audio_is_copied_from_a_source(tmp_path: Path) -> None:
    source = write_video(tmp_path / "src.mp4", ramp(24), 12, audio_pcm=tone(2.0))
    copy = write_video(tmp_path / "copy.mp4", iter_frames(source), "12/1", audio_source=source)
    assert probe_video(copy).has_audio
    assert probe_video(copy).audio_sample_rate == 22050


def test_streaming_reader_range(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", ramp(20), 10)
    chunk = list(iter_frames(path, 5, 8))
    assert len(chunk) == 3 and abs(float(chunk[0].mean()) - 50) < 3


def test_odd_sizes_are_padded(tmp_path: Path) -> None:
    path = write_video(tmp_path / "odd.mp4", [np.zeros((63, 47, 3), np.uint8)] * 3, 10)
    assert (probe_video(path).width, probe_video(path).height) == (48, 64)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100])
def test_bad_files_raise_with_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match="broken.mp4"):
        probe_video(path)


def test_truncated_video(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", ramp(30), 10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoError, match="cut.mp4"):
        probe_video(cut)


def test_failed_write_leaves_previous_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", ramp(5), 10)
    before = path.read_bytes()

    def frames():
        yield from ramp(3)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_video(path, frames(), 10)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_atomic_path_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("half")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
