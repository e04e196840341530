"""The renderer: one pass over the source, every variant encoded side by side, two ways to get the
edited frames (see :mod:`align_core.stimuli.editing.render` for what and why):

- :class:`EveryFrameRenderer`: every frame is its own keyframe, edited for each variant;
- :class:`PropagatedRenderer`: keyframe edits carried to the frames between by optical flow.
"""

from __future__ import annotations

import abc
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align_core.io.atomic import atomic_directory
from align_core.io.video_io import VideoWriter, iter_frames
from align_core.stimuli.editing.keyframe_edits import FrameInputs, KeyframeEdits, RequestKey
from align_core.stimuli.editing.manifest import render_manifest
from align_core.stimuli.editing.preview import RenderPreview
from align_core.stimuli.editing.propagation import Segment, iter_segments, propagate_segment
from align_core.stimuli.editing.regions import allowed_region, bounding_box
from align_core.stimuli.editing.render_request import VARIANT_CRF, RenderRequest

__all__ = [
    "EveryFrameRenderer",
    "PropagatedRenderer",
    "RenderResult",
    "VariantRenderer",
]

#: Opens an output: ``(path, fps_fraction, audio_source=..., preset=..., [crf=...])`` -> a VideoWriter.
WriterFactory = Callable[..., VideoWriter]


@dataclass
class RenderResult:
    output_dir: Path
    variant_paths: dict[str, Path]
    comparison_path: Path
    contact_sheet_path: Path
    manifest_path: Path
    keyframes: tuple[int, ...]
    keyframe_share: float
    edit_calls: int
    timings: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


class VariantRenderer(abc.ABC):
    """Renders one :class:`RenderRequest` into its output directory (swapped in whole).

    Subclasses supply :meth:`_render_frames`, which decodes the source once and hands every
    frame of every variant to :meth:`_emit`. Use :meth:`for_request` to get the right one.
    """

    def __init__(self, request: RenderRequest, open_writer: WriterFactory):
        self.request = request
        self._open_writer = open_writer
        self.timings = {"edit_s": 0.0, "flow_s": 0.0, "propagate_s": 0.0, "encode_s": 0.0}
        self.inputs = FrameInputs(request)
        self.edits = KeyframeEdits(request, self.inputs, self.timings)
        self.preview = RenderPreview(
            request.names,
            request.size,
            request.frame_count,
            request.contact_frames,
            request.comparison_scale,
            request.comparison_max_side,
        )
        self.protected_pixels = 0
        self._writers: dict[str, VideoWriter] = {}
        self._comparison: VideoWriter | None = None

    @staticmethod
    def for_request(request: RenderRequest, open_writer: WriterFactory) -> VariantRenderer:
        """The renderer of the request's strategy (every frame edited, or keyframes propagated)."""
        cls = EveryFrameRenderer if request.edit_every_frame else PropagatedRenderer
        return cls(request, open_writer)

    def render(self, started: float) -> RenderResult:
        """Write every output and the manifest; ``started`` is when the render began (perf_counter)."""
        request = self.request
        with atomic_directory(request.output_dir) as tmp, contextlib.ExitStack() as stack:
            self._open_outputs(tmp, stack)
            self._render_frames()
            stack.close()  # finish every mp4 (and its audio) before hashing
            self.preview.write_contact_sheet(tmp / "contact_sheet.png", request.video_path)
            self.timings["total_s"] = time.perf_counter() - started
            manifest = render_manifest(
                request, tmp, self._writers, self.edits, self.preview.contact_at, self.protected_pixels, self.timings
            )
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        return self._result(manifest)

    @abc.abstractmethod
    def _render_frames(self) -> None:
        """Decode the source once and write every variant's frames (each strategy's own loop)."""

    def _open_outputs(self, folder: Path, stack: contextlib.ExitStack) -> None:
        request = self.request
        fps, source = request.probe.fps_fraction, request.video_path
        self._writers = {
            name: stack.enter_context(
                self._open_writer(
                    folder / f"{name}.mp4", fps, audio_source=source, preset=request.preset, crf=VARIANT_CRF
                )
            )
            for name in request.names
        }
        self._comparison = stack.enter_context(
            self._open_writer(folder / "comparison.mp4", fps, audio_source=source, preset=request.preset)
        )

    def _emit(
        self,
        frame_index: int,
        original: np.ndarray,
        frames_out: Mapping[str, np.ndarray],
        product: np.ndarray,
        protected: np.ndarray | None,
    ) -> None:
        """Copy protected pixels from the source into every variant's frame, encode, tile, thumbnail.

        Touches only its arguments, the writers, the preview and the protected-pixel count: it
        may run on the encoding thread while the next frame is edited.
        """
        t0 = time.perf_counter()
        if protected is not None:
            self.protected_pixels += int(protected.sum())
            box = bounding_box(protected)
            keep = protected[box]
            for array in {id(a): a for a in frames_out.values()}.values():  # out[protect] = source[protect]
                array[box][keep] = original[box][keep]
        for name in self.request.names:
            self._writers[name].write(frames_out[name])
        assert self._comparison is not None
        self._comparison.write(self.preview.comparison_frame(frame_index, original, frames_out, product, protected))
        self.timings["encode_s"] += time.perf_counter() - t0

    def _result(self, manifest: dict[str, Any]) -> RenderResult:
        request, out = self.request, self.request.output_dir
        return RenderResult(
            output_dir=out,
            variant_paths={name: out / f"{name}.mp4" for name in request.names},
            comparison_path=out / "comparison.mp4",
            contact_sheet_path=out / "contact_sheet.png",
            manifest_path=out / "manifest.json",
            keyframes=tuple(int(k) for k in request.keyframes),
            keyframe_share=len(request.keyframes) / request.frame_count,
            edit_calls=self.edits.calls,
            timings=self.timings,
            manifest=manifest,
        )


class EveryFrameRenderer(VariantRenderer):
    """Every frame is its own keyframe: edit it for each variant and write it; nothing to propagate.

    One edit per distinct request, side by side on two threads when the editor allows concurrent
    edits. Frame t is encoded on another thread while frame t+1 is edited (x264 and the colour
    conversion release the GIL), one frame in flight, in order; an encoding error stops the
    render here.
    """

    def _render_frames(self) -> None:
        request, edits = self.request, self.edits
        concurrent = bool(getattr(request.editor, "concurrent_edits", False))
        with (
            ThreadPoolExecutor(1, thread_name_prefix="align-encode") as encoding,
            ThreadPoolExecutor(2 if concurrent else 1, thread_name_prefix="align-edit") as editing,
        ):
            in_flight: Future[None] | None = None
            for frame_index, original in enumerate(iter_frames(request.video_path)):
                if concurrent:
                    edits.prefetch(frame_index, original, editing)
                frames_out = {name: edits.edited(name, frame_index, original, True)[1] for name in request.names}
                edits.forget(frame_index)
                regions = self.inputs.at(frame_index)
                if in_flight is not None:
                    in_flight.result()
                in_flight = encoding.submit(
                    self._emit, frame_index, original, frames_out, regions.mask, regions.protect
                )
            if in_flight is not None:
                in_flight.result()


class PropagatedRenderer(VariantRenderer):
    """Keyframes edited, the frames between carried by optical flow (computed once per segment and
    shared by all variants); variants asking for the same pair of keyframe edits share the result."""

    def _render_frames(self) -> None:
        request = self.request
        for segment in iter_segments(iter_frames(request.video_path), request.units, request.keyframe_stride):
            t0 = time.perf_counter()
            one_frame = len(segment.frames) == 1  # nothing to carry
            warps = [] if one_frame else request.propagator.plan_segment(segment)
            self.timings["flow_s"] += time.perf_counter() - t0
            outputs = self._propagate(segment, warps)
            self.edits.forget_before(segment.stop)
            for offset, original in enumerate(segment.frames):
                # propagated lists may share frames: copy before the protected pixels are restored in place
                index = segment.start + offset
                self._emit(
                    index,
                    original,
                    {name: outputs[name][offset].copy() for name in request.names},
                    np.asarray(request.masks[index], dtype=bool),
                    self.inputs.protect_at(index),
                )

    def _propagate(self, segment: Segment, warps: Any) -> dict[str, list[np.ndarray]]:
        """Each variant's frames of ``segment``, propagated once per distinct pair of keyframe edits."""
        edits, produced = self.edits, {}
        outputs: dict[str, list[np.ndarray]] = {}
        for name in self.request.names:
            key_prev, edit_prev = edits.edited(name, segment.start, segment.frames[0], True)
            key_next: RequestKey | None = None
            edit_next = None
            if segment.next_frame is not None:
                key_next, edit_next = edits.edited(name, segment.stop, segment.next_frame, False)
            shared = (key_prev, key_next)
            if shared not in produced:
                placebo = "placebo" in (key_prev[0], key_next[0] if key_next else None)
                t0 = time.perf_counter()
                produced[shared] = propagate_segment(
                    self.request.propagator,
                    segment,
                    warps,
                    edit_prev,
                    edit_next,
                    self._placebo_region if placebo else _anywhere,
                )
                self.timings["propagate_s"] += time.perf_counter() - t0
            outputs[name] = produced[shared]
        return outputs

    def _placebo_region(self, index: int) -> np.ndarray:
        """Where a propagated placebo edit may land at frame ``index`` (outside the dilated product)."""
        return allowed_region("placebo", np.asarray(self.request.masks[index], bool), self.request.margin_px)


def _anywhere(index: int) -> None:
    """A propagated non-placebo edit may land anywhere."""
    return None
