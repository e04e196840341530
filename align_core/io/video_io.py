"""Video probing, streaming frame reading and H.264 writing with the source's audio kept.

PyAV (FFmpeg) does the work: OpenCV cannot write H.264 on this machine, and browsers play H.264
mp4 but not ``mp4v``. Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``.

Reading streams one decoded frame at a time, so memory does not grow with video length.
Writing goes to a temporary file that is renamed into place on a clean close, so a killed
write never leaves a half-written mp4 where a good one was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from align_core.io.atomic import atomic_path
from align_core.io.hashing import file_sha256

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoProbe",
    "VideoWriter",
    "even_size",
    "is_video_file",
    "iter_frames",
    "lockstep_frames",
    "probe_video",
    "read_frame",
    "read_frames",
    "write_video",
]

#: Smallest picture side the platform edits (optical flow needs 12 px, attention patches more).
MIN_SIDE = 16

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})

#: Audio codecs that an mp4 container takes as they are; anything else is re-encoded to AAC.
_MP4_COPYABLE_AUDIO = frozenset({"aac", "mp3", "alac"})


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoProbe:
    """What a stage needs to know about a video before it decodes it."""

    path: str
    width: int
    height: int
    fps: float
    fps_fraction: str  # exact rate as "num/den", e.g. "179/6"
    frame_count: int
    duration_s: float  # frame_count / fps: the video stream's own length
    video_codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    size_bytes: int
    sha256: str
    rotation: int = 0  # display rotation applied on reading (phone videos); width/height are as displayed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def frame_centre_time(self, index: int) -> float:
        """Centre time of frame ``index`` in seconds (frames last 1/fps)."""
        return (index + 0.5) / self.fps


def is_video_file(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"not a readable video container ({exc})") from exc


def probe_video(path: str | os.PathLike[str]) -> VideoProbe:
    """Probe fps, frame count, duration, resolution and audio without decoding pictures.

    The frame count comes from demuxing the video stream's packets (one packet per frame for
    the codecs ads use), which is exact and fast; a container whose packets cannot be read to
    the end is reported as truncated or corrupt.
    """
    path = Path(path)
    with _open_input(path) as container:
        if not container.streams.video:
            raise VideoError(path, "has no video stream")
        stream = container.streams.video[0]
        if container.format.name.endswith("_pipe") or container.format.name == "image2":
            kind = container.format.name.removesuffix("_pipe").upper()
            raise VideoError(
                path, f"is a {kind} image ({container.format.long_name}), not a video; only video files can be ads"
            )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise VideoError(path, "has no usable frame rate")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(path, "has no picture size (corrupt header?)")
        if min(width, height) < MIN_SIDE:
            raise VideoError(
                path, f"picture is {width}x{height}: too small to edit (at least {MIN_SIDE}x{MIN_SIDE} pixels)"
            )
        audio = container.streams.audio[0] if container.streams.audio else None
        frame_count, stamps, audio_end_s = _demux_packets(path, container, stream, audio)
        if frame_count == 0:
            raise VideoError(path, "contains no video frames")
        if frame_count < 2:
            raise VideoError(path, f"has a single {stream.codec_context.name} frame: a still image, not a video")
        # Truncation first: a cut file with B-frames has gaps in its timestamps that would
        # otherwise read as a variable frame rate, and "re-encode it" would make a shorter ad.
        _check_complete(path, container, frame_count, stamps, float(rate), audio_end_s)
        _check_constant_rate(path, stamps, stream.time_base)
        probe = VideoProbe(
            path=str(path),
            width=int(width),
            height=int(height),
            fps=float(rate),
            fps_fraction=f"{rate.numerator}/{rate.denominator}",
            frame_count=frame_count,
            duration_s=frame_count / float(rate),
            video_codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            audio_channels=int(audio.codec_context.channels) if audio is not None else None,
            size_bytes=path.stat().st_size,
            sha256=file_sha256(path),
        )
    # Decode the first frame so a file whose packets demux but whose pictures do not is caught
    # here; it also gives the size as displayed (after the rotation a phone recorded).
    first, rotation = _first_frame(path)
    if rotation:
        probe = VideoProbe(
            **{**probe.to_dict(), "width": int(first.shape[1]), "height": int(first.shape[0]), "rotation": rotation}
        )
    return probe


def _first_frame(path: Path) -> tuple[np.ndarray, int]:
    container = _open_input(path)
    try:
        frame = next(container.decode(container.streams.video[0]))
        return _upright(frame), _rotation(frame)
    except (av.FFmpegError, StopIteration) as exc:
        raise VideoError(path, f"its first picture cannot be decoded ({exc})") from exc
    finally:
        container.close()


def _rotation(frame: av.VideoFrame) -> int:
    """The display rotation (degrees counter-clockwise, a multiple of 90) the file asks for."""
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB picture as a player shows it: the display-matrix rotation applied (FFmpeg's autorotate)."""
    picture = frame.to_ndarray(format="rgb24")
    quarter_turns = _rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(picture, k=quarter_turns)) if quarter_turns else picture


def _demux_packets(path: Path, container: Any, stream: Any, audio: Any) -> tuple[int, list[int], float]:
    """(video packets, their pts, end of the last audio packet in seconds) read to the file's end."""
    frame_count, stamps, audio_end_s = 0, [], 0.0
    streams = [stream] if audio is None else [stream, audio]
    try:
        for packet in container.demux(*streams):
            if not packet.size:
                continue
            if packet.stream.type == "audio":
                if packet.pts is not None and packet.time_base is not None:
                    end = packet.pts + (packet.duration or 0) - (audio.start_time or 0)
                    audio_end_s = max(audio_end_s, float(end * packet.time_base))
                continue
            frame_count += 1
            if packet.pts is not None:
                stamps.append(int(packet.pts))
    except av.FFmpegError as exc:
        raise VideoError(path, f"is truncated or corrupt after {frame_count} frames ({exc})") from exc
    return frame_count, stamps, audio_end_s


def _check_complete(
    path: Path, container: Any, frame_count: int, stamps: list[int], fps: float, audio_end_s: float
) -> None:
    """Refuse a file that ends before its header says it does (a download or copy cut short).

    A file whose index sits at the front ("faststart") demuxes cleanly up to the cut, so the
    header's frame count and declared duration are compared with what can be read: the video
    stream's own duration when the container has one, else the container's (Matroska), which
    audio may extend, so the longer of the readable video and audio counts there.
    """
    stream = container.streams.video[0]
    declared = int(stream.frames or 0)
    if declared > frame_count:
        raise VideoError(
            path,
            f"is truncated: its header declares {declared} frames, only {frame_count} can be read "
            f"(the file was cut short; copy or download it again){_NOT_A_RATE_PROBLEM}",
        )
    if not stamps or stream.time_base is None:
        return
    readable_s = float((max(stamps) - min(stamps)) * stream.time_base) + 1.0 / fps
    if stream.duration:
        declared_s = float(stream.duration * stream.time_base)
    elif container.duration:
        declared_s = container.duration / av.time_base
        readable_s = max(readable_s, audio_end_s)
    else:
        return
    if declared_s - readable_s > max(2.0 / fps, 0.1):
        raise VideoError(
            path,
            f"is truncated: its header declares {declared_s:.2f} s, only {readable_s:.2f} s can be read "
            f"(the file was cut short; copy or download it again){_NOT_A_RATE_PROBLEM}",
        )


_NOT_A_RATE_PROBLEM = "; re-encoding it would make a shorter ad"


def _check_constant_rate(path: Path, stamps: list[int], time_base) -> None:
    """Refuse variable-frame-rate video: scenes map to frames by time at one fps (DESIGN contract)."""
    if len(stamps) < 3 or time_base is None:
        return
    durations = np.diff(np.sort(np.asarray(stamps, dtype=np.int64)))
    durations = durations[durations > 0]
    if len(durations) < 2:
        return
    typical = float(np.median(durations))
    if durations.max() > 1.5 * typical or durations.min() < typical / 1.5:
        ms = lambda ticks: 1000.0 * float(ticks * time_base)  # noqa: E731
        raise VideoError(
            path,
            f"has a variable frame rate (frames last {ms(durations.min()):.1f} to {ms(durations.max()):.1f} ms); "
            "scenes map to frames at one constant rate, so re-encode it at a constant rate first "
            "(e.g. ffmpeg -i in.mp4 -fps_mode cfr -r 30 out.mp4)",
        )


def even_size(height: int, width: int) -> tuple[int, int]:
    """The size :class:`VideoWriter` writes a ``height x width`` picture at (yuv420p needs even sizes)."""
    return height + height % 2, width + width % 2


def iter_frames(
    path: str | os.PathLike[str],
    start: int = 0,
    stop: int | None = None,
    crop_to: tuple[int, int] | None = None,
    wanted: Callable[[int], bool] | None = None,
) -> Iterator[np.ndarray | None]:
    """Yield RGB frames ``[start, stop)`` one at a time (constant memory in video length).

    ``crop_to=(height, width)`` reads a rendered video back at its source's size: a source of
    odd size is written padded by one edge row/column (:class:`VideoWriter`), which this removes.
    Any other size difference is an error. With ``wanted``, frames whose index it rejects are
    decoded but yielded as None, never converted to RGB (at 1080x1920 the conversion costs about
    as much as the decode).
    """
    path = Path(path)
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    break
                if index >= start and wanted is not None and not wanted(index):
                    yield None
                elif index >= start:
                    picture = _upright(frame)
                    if crop_to is not None and picture.shape[:2] != tuple(crop_to):
                        if picture.shape[:2] != even_size(*crop_to):
                            raise VideoError(
                                path,
                                f"frame {index} is {picture.shape[1]}x{picture.shape[0]}, expected "
                                f"{crop_to[1]}x{crop_to[0]} (or that padded to even)",
                            )
                        picture = picture[: crop_to[0], : crop_to[1]]
                    yield picture
                index += 1
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding failed at frame {index} ({exc})") from exc
        if index == 0:
            raise VideoError(path, "decoded no frames")
    finally:
        container.close()


def lockstep_frames(
    paths: Iterable[str | os.PathLike[str]],
    size: tuple[int, int],
    wanted: Callable[[int], bool] | None = None,
) -> Iterator[tuple[np.ndarray | None, ...]]:
    """Frame ``t`` of every video at once, each read at ``size`` (see ``crop_to`` of :func:`iter_frames`).

    One decode per video; with ``wanted``, frames it rejects come as None (decoded, never converted).
    A video that ends before or after the others is an error naming it.
    """
    paths = [Path(path) for path in paths]
    sentinel = object()
    streams = [iter_frames(path, crop_to=size, wanted=wanted) for path in paths]
    index = 0
    while True:
        current = [next(stream, sentinel) for stream in streams]
        ended = [path for path, frame in zip(paths, current, strict=False) if frame is sentinel]
        if len(ended) == len(paths):
            return
        if ended:
            running = [path for path, frame in zip(paths, current, strict=False) if frame is not sentinel]
            raise ValueError(
                f"video {ended[0]}: ended after {index} frames while {running[0]} goes on: "
                "the variant and its baseline have different frame counts"
            )
        yield tuple(current)  # type: ignore[misc]
        index += 1


def read_frames(path: str | os.PathLike[str], start: int = 0, stop: int | None = None) -> np.ndarray:
    """Decode frames ``[start, stop)`` into one ``(T, H, W, 3)`` array (for short ranges)."""
    frames = list(iter_frames(path, start, stop))
    if not frames:
        raise VideoError(path, f"no frames in range [{start}, {stop})")
    return np.stack(frames)


def read_frame(path: str | os.PathLike[str], index: int) -> np.ndarray:
    return read_frames(path, index, index + 1)[0]


class VideoWriter:
    """Write RGB frames to an H.264 (libx264, yuv420p) mp4, optionally keeping another file's audio.

    Use as a context manager. The file appears at ``path`` only when the block exits cleanly.
    Audio packets from ``audio_source`` are interleaved by time with the video; codecs an mp4
    cannot hold are re-encoded to AAC. Odd frame sizes are padded by one edge row/column
    (yuv420p needs even sizes); ``padded`` records whether that happened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction | str,
        *,
        audio_source: str | os.PathLike[str] | None = None,
        audio_pcm: tuple[np.ndarray, int] | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ):
        if audio_source is not None and audio_pcm is not None:
            raise ValueError("give audio_source or audio_pcm, not both")
        self.path = Path(path)
        self.fps = _as_fraction(fps)
        self.audio_source = Path(audio_source) if audio_source is not None else None
        self.audio_pcm = audio_pcm
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self.audio_packets_written = 0
        self.padded = False
        self._atomic = None
        self._container = None
        self._stream = None
        self._audio = None

    # -- context management -------------------------------------------------------------------
    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        if self.audio_source is not None:
            self._audio = _AudioRemux(self.audio_source, self._container)
        elif self.audio_pcm is not None:
            self._audio = _PcmAudio(*self.audio_pcm, self._container)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.frames_written == 0:
                    raise VideoError(self.path, "writer closed without any frames")
                self._flush()
        finally:
            container, self._container = self._container, None
            if container is not None:
                container.close()
            if self._audio is not None:
                self._audio.close()
            failure = exc if exc_type is not None else None
            self._atomic.__exit__(type(failure) if failure else None, failure, None)

    # -- writing ------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        frame = self._even(frame)
        if self._stream is None:
            self._open_video_stream(frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"{self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, "
                f"stream is {self._stream.width}x{self._stream.height}"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._audio is not None:
            self.audio_packets_written += self._audio.mux_until(self.frames_written / self.fps)

    def write_all(self, frames: Iterable[np.ndarray]) -> None:
        for frame in frames:
            self.write(frame)

    def _even(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        if height % 2 == 0 and width % 2 == 0:
            return frame
        self.padded = True
        return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")

    def _open_video_stream(self, width: int, height: int) -> None:
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1) / self.fps
        stream.codec_context.time_base = stream.time_base
        # x264's macroblock-tree rate control makes the output differ between identical runs
        # (measured: 4 distinct files in 12 encodes of the same frames, decoded pixels off by up
        # to 32/255); without it every encode of the same frames is byte-identical.
        stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "mbtree=0"}
        self._stream = stream

    def _flush(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            self.audio_packets_written += self._audio.mux_until(None)


class _AudioRemux:
    """Copies (or re-encodes to AAC) the audio of a source file into an output container."""

    def __init__(self, source: Path, output: av.container.OutputContainer):
        self._input = _open_input(source)
        self._in_stream = self._input.streams.audio[0] if self._input.streams.audio else None
        self._output = output
        self._out_stream = None
        self._copy = False
        self._packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._resampler = None
        if self._in_stream is None:
            return
        self._copy = self._in_stream.codec_context.name in _MP4_COPYABLE_AUDIO
        if self._copy:
            self._out_stream = output.add_stream_from_template(self._in_stream)
        else:
            ctx = self._in_stream.codec_context
            self._out_stream = output.add_stream("aac", rate=ctx.sample_rate)
            self._out_stream.layout = ctx.layout.name if ctx.layout else "stereo"
            self._resampler = av.AudioResampler(format="fltp", layout=self._out_stream.layout, rate=ctx.sample_rate)
        self._packets = (p for p in self._input.demux(self._in_stream) if p.size)

    def _next(self) -> av.Packet | None:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        return next(self._packets, None) if self._packets is not None else None

    def mux_until(self, until_s: float | None) -> int:
        """Mux source audio packets that start before ``until_s`` (all of them when None)."""
        if self._in_stream is None:
            return 0
        written = 0
        while (packet := self._next()) is not None:
            start = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
            if until_s is not None and start > until_s:
                self._pending = packet
                break
            written += self._write(packet)
        if until_s is None and not self._copy:
            for out_packet in self._out_stream.encode(None):
                self._output.mux(out_packet)
        return written

    def _write(self, packet: av.Packet) -> int:
        if self._copy:
            packet.stream = self._out_stream
            self._output.mux(packet)
            return 1
        count = 0
        for frame in packet.decode():
            frame.pts = None
            for resampled in self._resampler.resample(frame):
                for out_packet in self._out_stream.encode(resampled):
                    self._output.mux(out_packet)
                    count += 1
        return count

    def close(self) -> None:
        self._input.close()


class _PcmAudio:
    """Encodes a float PCM array ``(channels, samples)`` in [-1, 1] to AAC, interleaved by time."""

    FRAME = 1024  # AAC frame size in samples

    def __init__(self, samples: np.ndarray, rate: int, output: av.container.OutputContainer):
        samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
        if samples.shape[0] not in (1, 2):
            raise ValueError(f"audio must be (channels, samples) with 1 or 2 channels, got {samples.shape}")
        self._samples = np.clip(samples, -1.0, 1.0)
        self._rate = int(rate)
        self._output = output
        self._stream = output.add_stream("aac", rate=self._rate)
        self._stream.layout = "mono" if samples.shape[0] == 1 else "stereo"
        self._position = 0

    def mux_until(self, until_s: float | None) -> int:
        total = self._samples.shape[1]
        end = total if until_s is None else min(total, int(until_s * self._rate))
        written = 0
        while self._position < end:
            chunk = self._samples[:, self._position : self._position + self.FRAME]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self._stream.layout)
            frame.sample_rate = self._rate
            frame.pts = self._position
            self._position += chunk.shape[1]
            for packet in self._stream.encode(frame):
                self._output.mux(packet)
                written += 1
        if until_s is None:
            for packet in self._stream.encode(None):
                self._output.mux(packet)
                written += 1
        return written

    def close(self) -> None:
        pass


def _as_fraction(fps: float | Fraction | str) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    if isinstance(fps, str):
        return Fraction(fps)
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float | Fraction | str,
    *,
    audio_source: str | os.PathLike[str] | None = None,
    audio_pcm: tuple[np.ndarray, int] | None = None,
    crf: int = 18,
) -> Path:
    """Write ``frames`` as an H.264 mp4 at ``path`` (atomically), keeping ``audio_source``'s audio."""
    with VideoWriter(path, fps, audio_source=audio_source, audio_pcm=audio_pcm, crf=crf) as writer:
        writer.write_all(frames)
    return Path(path)
