"""Render every variant of one video: keyframe edits, flow propagation, H.264 with the source's audio.

Keyframes are the first frame of every scene, the first frame of every timing window inside a
scene (where a timing variant's edit switches), and every ``stride``-th frame after those; flow
propagation never crosses a cut or a window boundary. An editor that is a cheap deterministic
function of (frame, mask, strength) (``propagation = "every_frame"``, the salience editor) has EVERY
frame edited with its own mask instead: flow-propagated blur/sharpen residuals misregister by a
pixel and lose most of their effect (on the demo, a reduction's propagated frames kept about a
third of the keyframe's change in the product's texture and 8% of the planned alignment change).
One pass over the source: frames are decoded once and streamed in keyframe segments (at most
``stride + 1`` frames held), flow is computed once per segment and shared by all variants, and a
keyframe edit is computed once per distinct request (early_boost and full_boost ask for the same
edit on an early keyframe; every out-of-window keyframe is the baseline's identity edit), so
variants that share work do not redo it. Outputs, written into a temporary directory swapped in
whole (``atomic_directory``):

- ``<variant>.mp4``: H.264 at the source's resolution and exact frame rate, source audio kept;
- ``comparison.mp4``: the original and all variants tiled in a labelled grid (4 columns; tiles at
  half size, at most ``comparison_max_side`` px long), audio kept;
- ``contact_sheet.png``: a few frames per variant (rows) with labels;
- ``manifest.json``: lineage (input hashes, config, seed, editor and flow lineage, keyframes,
  share of frames edited at a keyframe, per-variant output hashes and edit magnitudes).

Allowed regions (the pixels a variant may change; the rest is copied from the original): boosts
and reductions may change the whole frame, since they work by muting or enriching the
background AND adjusting the product; the baseline goes through the identity path over the whole
frame; the placebo may change only pixels outside the product mask dilated by
``placebo_margin`` (a fraction of the frame's shorter side). Protected pixels (``protect``: text
overlays, faces, user regions; :mod:`align_core.perception.protect`) are outside every variant's allowed
region, and after editing and propagation the renderer copies them from the source frame
(``out[protect] = source[protect]``), so no variant, whatever its editor, changes them. The
copied region is ``protect`` dilated by ``protect_guard_px`` (8 px): yuv420p shares chroma over
2x2 pixels and H.264 quantises 4x4/8x8 blocks, so an edit right next to a protected pixel
otherwise bleeds into it after encoding (measured on an outlined caption beside a fully
desaturated or saturated background: 34-36 dB inside the box against baseline without a guard;
with 8 px, no worse than the codec's own noise there). The
contact sheet and the comparison video outline the product (green) and protected regions
(magenta).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from align_core.io.atomic import atomic_directory
from align_core.io.video_io import VideoWriter, file_sha256, iter_frames, probe_video
from align_core.io.visuals import outline_regions
from align_core.measurement.perceptual_budget import downsample_factor
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest, edit_with_report
from align_core.stimuli.editing.propagation import FlowPropagator, iter_segments, keyframe_indices, propagate_segment
from align_core.stimuli.editing.regions import bounding_box, dilate_ellipse, restore
from align_core.stimuli.plans import VariantPlan, VariantPlans

__all__ = [
    "DeferredArray",
    "RenderResult",
    "StrengthMap",
    "allowed_region",
    "auto_encoder_preset",
    "edit_limits",
    "guarded_protect",
    "render_variants",
]


@dataclass(frozen=True)
class StrengthMap:
    """Editor strength needed for a relative alignment change, per kind.

    Tables give the achieved ``log(a'/a)`` at a few strengths (monotone); the strength for a
    target is interpolated. The default tables are a documented prior (strength 1 doubles or
    halves the product's share); :func:`align_core.measurement.manipulation.calibrate_strength_map` replaces
    them with values measured on the video's keyframes with the checking attention function.
    """

    boost_strengths: tuple[float, ...] = (0.0, 1.0)
    boost_log_ratio: tuple[float, ...] = (0.0, math.log(2.0))
    reduce_strengths: tuple[float, ...] = (0.0, 1.0)
    reduce_log_ratio: tuple[float, ...] = (0.0, math.log(0.5))
    source: str = "default prior: strength 1 doubles (boost) or halves (reduce) the product's share"

    def strength_for(self, kind: str, original: float, target: float) -> float:
        """Strength in [0, 1] expected to move alignment from ``original`` to ``target``."""
        if kind == "identity" or original <= 1e-9 or target <= 0 or abs(target - original) < 1e-12:
            return 0.0
        need = math.log(target / original)
        if kind == "boost":
            strengths, ratios = np.asarray(self.boost_strengths), np.asarray(self.boost_log_ratio)
        elif kind == "reduce":
            strengths, ratios = np.asarray(self.reduce_strengths), -np.asarray(self.reduce_log_ratio)
            need = -need
        else:
            raise ValueError(f"no strength mapping for kind {kind!r}")
        ratios = np.maximum.accumulate(ratios)  # enforce monotone for interpolation
        if need <= 0:
            return 0.0
        if need >= ratios[-1]:
            return 1.0
        return float(np.clip(np.interp(need, ratios, strengths), 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeferredArray:
    """An array computed on first use: what an editor may read but the salience editor never does.

    A request's attention map and target control are full-size float32 (8-16 MB a frame at
    1080x1920); building them for every variant of every frame cost more than the edit itself.
    ``shape`` and ``dtype`` are known without computing; ``np.asarray`` computes (once).
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, compute: Any):
        self.shape, self.dtype, self._compute, self._value = tuple(shape), np.dtype(dtype), compute, None

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._value is None:
            self._value = np.asarray(self._compute(), dtype=self.dtype)
        return self._value if dtype is None else self._value.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self)[key]


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


#: x264 CRF of every variant. Protected pixels are identical in every variant before encoding;
#: after it they differ only by how differently the encoder codes them beside different edits.
#: At CRF 18 that left 5 of 54 demo rows at 39.0-39.96 dB against baseline inside protected
#: regions (the stimulus floor is 40 dB); CRF 16 quantises 1.26x finer (files ~25 % larger).
VARIANT_CRF = 16


def auto_encoder_preset(width: int, height: int) -> str:
    """x264 preset for a frame size: ``veryfast`` below one megapixel, ``superfast`` from there.

    At one CRF both target the same quality; at 1080x1920 superfast takes about 60 % of
    veryfast's encoding time for files about 40 % larger, and seven variants plus the
    comparison grid are encoded per frame (``bench/bench_real_size.py`` measures it).
    """
    return "veryfast" if width * height < 1_000_000 else "superfast"


def allowed_region(kind: str, mask: np.ndarray, placebo_margin_px: int) -> np.ndarray:
    """Pixels a variant of ``kind`` may change at a frame with product ``mask`` (see module docs)."""
    if kind != "placebo":
        return np.ones(mask.shape, dtype=bool)
    return ~dilate_ellipse(mask, placebo_margin_px)


def edit_limits(reports: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per timing window: how often the editor's budget capped the strength, or the strength map ran out.

    A window whose boost or reduction was limited this way and then misses its target is
    ``unreachable`` (the manipulation check reads this), not a failed edit.
    """
    out: dict[str, dict[str, Any]] = {}
    edits = [r for r in reports if r.get("kind") in ("boost", "reduce", "placebo")]
    for window in sorted({str(r["window"]) for r in edits}):
        rows = [r for r in edits if r["window"] == window]
        out[window] = {
            "frames_edited": len(rows),
            "frames_budget_capped": int(sum(bool(r["capped"]) for r in rows)),
            "frames_at_max_strength": int(sum(bool(r.get("at_max_strength")) for r in rows)),
            "mean_requested": float(np.mean([r["requested"] for r in rows])),
            "mean_used": float(np.mean([r["used"] for r in rows])),
            "min_ssim": float(min(r["ssim"] for r in rows)),
            "max_delta_e": float(max(r["delta_e"] for r in rows)),
        }
    return out


def guarded_protect(region: np.ndarray | None, guard_px: int) -> np.ndarray | None:
    """``region`` dilated by ``guard_px`` (the pixels actually copied from the source); None if empty."""
    if region is None or not region.any():
        return None
    if guard_px <= 0:
        return region
    kernel = np.ones((2 * guard_px + 1, 2 * guard_px + 1), np.uint8)
    return cv2.dilate(region.astype(np.uint8), kernel) > 0


def propagation_ranges(plans: VariantPlans) -> tuple[tuple[int, int], ...]:
    """Scenes split where the timing window changes: the units keyframes and propagation stay inside.

    A timing variant's edit switches on at its window's first frame; with a keyframe there and no
    propagation across the boundary, the switch happens exactly where the plan puts it instead of
    fading in and out over a keyframe interval on both sides.
    """
    windows = plans.frame_windows
    ranges: list[tuple[int, int]] = []
    for start, stop in plans.scene_ranges:
        current = start
        for index in range(start + 1, stop):
            if windows[index] != windows[index - 1]:
                ranges.append((current, index))
                current = index
        ranges.append((current, stop))
    return tuple(ranges)


def array_sha256(array: np.ndarray) -> str:
    if not isinstance(array, np.ndarray) and hasattr(array, "frame"):
        # A lazy per-frame store (align_core.io.frames): hash frame by frame, the same digest as
        # the dense stack's, without building it.
        digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
        for index in range(len(array)):
            digest.update(np.ascontiguousarray(array.frame(index), dtype=array.dtype).tobytes())
        return digest.hexdigest()
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    flat = array.reshape(-1) if array.size else array
    step = max(1, (64 << 20) // max(1, array.itemsize))
    for start in range(0, flat.size, step):
        digest.update(flat[start : start + step].tobytes())
    return digest.hexdigest()


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    scale = max(0.35, min(out.shape[1], out.shape[0]) / 400)
    thickness = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (tw + 6, th + base + 6), (0, 0, 0), thickness=-1)
    cv2.putText(out, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def _captioned(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` under a black strip carrying ``text``: the label never covers the ad's own top caption."""
    strip = _label(np.zeros((max(14, image.shape[0] // 14), image.shape[1], 3), np.uint8), text)
    return np.concatenate([strip, image], axis=0)


def _grid(tiles: Sequence[np.ndarray], columns: int) -> np.ndarray:
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    canvas = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = tile
    return canvas


def _even_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def render_variants(
    video_path: str | os.PathLike[str],
    plans: VariantPlans,
    masks: np.ndarray,
    attention: np.ndarray,
    editor: KeyframeEditor,
    output_dir: str | os.PathLike[str],
    keyframe_stride: int = 8,
    seed: int = 0,
    strength_map: StrengthMap | None = None,
    placebo_margin: float = 0.02,
    propagator: FlowPropagator | None = None,
    contact_frames: int = 5,
    comparison_scale: float = 0.5,
    comparison_max_side: int = 480,
    extra_lineage: Mapping[str, Any] | None = None,
    edit_every_frame: bool | None = None,
    protect: Any = None,
    protect_guard_px: int = 8,
    encoder_preset: str = "auto",
) -> RenderResult:
    """Edit, propagate and write every planned variant of ``video_path`` into ``output_dir``.

    ``masks`` is bool ``(T, H, W)`` and ``attention`` float32 ``(T, H, W)`` (anything indexable by
    frame, e.g. a memmap). The source is decoded once; see the module docstring for outputs.
    ``protect`` (optional) is indexable by frame giving bool ``(H, W)``, True = never edit (a
    :class:`~align_core.perception.protect.ProtectedRegions` or a ``(T, H, W)`` array); the copied region is
    dilated by ``protect_guard_px`` (see the module docstring).
    ``encoder_preset``: the x264 preset of every output (CRF :data:`VARIANT_CRF` for the variants); ``auto`` picks
    :func:`auto_encoder_preset` for the frame size.
    ``edit_every_frame`` (default: the editor's ``propagation`` is ``every_frame``)
    edits every frame with its own mask instead of propagating keyframe edits by flow.
    """
    started = time.perf_counter()
    video_path = Path(video_path)
    probe = probe_video(video_path)
    count, height, width = probe.frame_count, probe.height, probe.width
    if plans.frame_count != count:
        raise ValueError(
            f"video {video_path}: plan {plans.video_id} has {plans.frame_count} frames, the file has {count}"
        )
    if tuple(masks.shape) != (count, height, width) or tuple(attention.shape) != (count, height, width):
        raise ValueError(
            f"video {video_path}: masks {tuple(masks.shape)} / attention {tuple(attention.shape)} "
            f"must be ({count}, {height}, {width})"
        )
    strength_map = strength_map or StrengthMap()
    preset = auto_encoder_preset(width, height) if encoder_preset == "auto" else encoder_preset
    propagator = propagator or FlowPropagator()
    margin_px = int(round(placebo_margin * min(height, width)))
    variant_plans: dict[str, VariantPlan] = dict(plans.plans)
    names = list(variant_plans)
    if edit_every_frame is None:
        edit_every_frame = editor.propagation == "every_frame"
    requested_stride = keyframe_stride
    if edit_every_frame:
        keyframe_stride = 1
    units = propagation_ranges(plans)
    keyframes = keyframe_indices(units, keyframe_stride)
    contact_at = sorted(set(np.linspace(0, count - 1, num=max(1, contact_frames)).round().astype(int).tolist()))
    thumb_w, thumb_h = _even_size(width, height, min(1.0, 180 / max(width, height)))
    # the grid's tiles: half size, at most comparison_max_side long (a 1080x1920 grid of 8 half-size
    # tiles would be a 2160x1920 video, as costly to encode as two variants)
    tile_w, tile_h = _even_size(width, height, min(comparison_scale, comparison_max_side / max(width, height)))
    stats: dict[str, dict[str, list[float] | list[str]]] = {
        n: {"strength": [], "mean_abs_change": [], "kind": []} for n in names
    }
    # Per variant, the editor's own report per recorded keyframe (editors with edit_with_report).
    edit_reports: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    thumbs: dict[str, list[np.ndarray]] = {n: [] for n in ["original", *names]}
    timings = {"edit_s": 0.0, "flow_s": 0.0, "propagate_s": 0.0, "encode_s": 0.0}
    edit_calls = 0
    # keyframe index -> {request key -> edited frame}; only the current segment's two keys are kept.
    edit_cache: dict[int, dict[tuple[Any, ...], np.ndarray]] = {}
    report_cache: dict[int, dict[tuple[Any, ...], dict[str, Any]]] = {}
    protect_cache: dict[int, np.ndarray | None] = {}
    protected_pixels = 0

    def protect_at(index: int) -> np.ndarray | None:
        if protect is None:
            return None
        if index not in protect_cache:
            if len(protect_cache) > 2 * keyframe_stride + 4:  # frames are visited in order: keep a window
                for old in sorted(protect_cache)[: len(protect_cache) // 2]:
                    del protect_cache[old]
            region = np.asarray(protect[index], dtype=bool)
            if region.shape != (height, width):
                raise ValueError(
                    f"video {video_path}: protect mask of frame {index} is {region.shape}, expected ({height}, {width})"
                )
            protect_cache[index] = guarded_protect(region, protect_guard_px)
        return protect_cache[index]

    frame_cache: dict[int, dict[str, Any]] = {}
    change_cache: dict[int, dict[tuple[Any, ...], float]] = {}
    sample_step = downsample_factor((height, width))

    def inputs_at(index: int) -> dict[str, Any]:
        """The frame's mask, protected region and allowed regions, computed once for all variants."""
        if index not in frame_cache:
            while len(frame_cache) > 2:  # frames are visited in order
                del frame_cache[min(frame_cache)]
            mask = np.asarray(masks[index], dtype=bool)
            frame_cache[index] = {"mask": mask, "protect": protect_at(index), "allowed": {}}
        return frame_cache[index]

    def allowed_at(index: int, kind: str) -> np.ndarray:
        entry = inputs_at(index)
        key = "placebo" if kind == "placebo" else "whole"
        if key not in entry["allowed"]:
            allowed = allowed_region(kind, entry["mask"], margin_px)
            if entry["protect"] is not None:
                allowed = allowed & ~entry["protect"]
            entry["allowed"][key] = allowed
        return entry["allowed"][key]

    def request_for(name: str, index: int, frame: np.ndarray) -> tuple[tuple[Any, ...], KeyframeEditRequest]:
        plan = variant_plans[name]
        kind = plan.kind_at(index)
        original = float(plans.original_alignment[index])
        target = float(plan.frame_target[index])
        if kind == "placebo":
            strength = strength_map.strength_for("boost", original, min(1.0, plan.spec.factor * original))
        else:
            strength = strength_map.strength_for(kind, original, target)
        strength = round(strength, 4)
        if strength == 0.0 and kind != "identity":
            kind = "identity"
        inputs = inputs_at(index)
        mask, protected = inputs["mask"], inputs["protect"]
        key = (kind, strength)
        allowed = allowed_at(index, kind)
        request = KeyframeEditRequest(
            frame=frame,
            mask=mask,
            attention=DeferredArray((height, width), np.float32, lambda: attention[index]),  # type: ignore[arg-type]
            target_control=DeferredArray(
                (2, height, width), np.float32, lambda: plan.control(index, mask, attention[index])
            ),  # type: ignore[arg-type]
            original_alignment=original,
            target_alignment=target,
            allowed=allowed,
            kind=kind,  # type: ignore[arg-type]
            strength=strength,
            seed=seed,
            protect=protected,
        )
        return key, request

    def run_edit(request: KeyframeEditRequest) -> tuple[np.ndarray, Any, float]:
        t0 = time.perf_counter()
        edited, report = edit_with_report(editor, request)  # an edit-only editor's report is measured on its output
        return np.asarray(edited), report, time.perf_counter() - t0

    def store_edit(
        index: int,
        frame: np.ndarray,
        key: tuple[Any, ...],
        request: KeyframeEditRequest,
        edited: np.ndarray,
        report: Any,
        seconds: float,
    ) -> None:
        nonlocal edit_calls
        timings["edit_s"] += seconds
        if edited.shape != frame.shape or edited.dtype != np.uint8:
            raise ValueError(
                f"video {video_path}: editor {editor.name} returned {edited.dtype} {edited.shape} for keyframe {index}"
            )
        report_cache.setdefault(index, {})[key] = {
            "frame": int(index),
            "window": str(plans.frame_windows[index]),
            **report.to_dict(),
        }
        # Pixels outside ``allowed``: only the placebo's region is smaller than the frame (the
        # protected pixels are copied from the source for every variant when the frame is written).
        edit_cache.setdefault(index, {})[key] = (
            restore(edited.copy(), frame, ~request.allowed) if request.kind == "placebo" else edited
        )
        edit_calls += 1

    def prefetch_edits(index: int, frame: np.ndarray, pool: ThreadPoolExecutor) -> None:
        """Edit the frame's distinct requests side by side (editors that allow concurrent edits)."""
        todo: dict[tuple[Any, ...], KeyframeEditRequest] = {}
        done = edit_cache.get(index, {})
        for name in names:
            key, request = request_for(name, index, frame)
            if key not in done and key not in todo:
                todo[key] = request
        futures = {key: pool.submit(run_edit, request) for key, request in todo.items()}
        for key, future in futures.items():
            store_edit(index, frame, key, todo[key], *future.result())

    def edited_key(name: str, index: int, frame: np.ndarray, record: bool) -> tuple[tuple[Any, ...], np.ndarray]:
        key, request = request_for(name, index, frame)
        per_key = edit_cache.setdefault(index, {})
        reports = report_cache.setdefault(index, {})
        if key not in per_key:
            store_edit(index, frame, key, request, *run_edit(request))
        if record:  # each keyframe starts exactly one segment: count it there
            stats[name]["strength"].append(request.strength)
            stats[name]["kind"].append(request.kind)
            changes = change_cache.setdefault(index, {})
            if key not in changes:  # on every k-th pixel of a large frame (k as the budget's downsampling)
                changes[key] = float(
                    np.abs(
                        per_key[key][::sample_step, ::sample_step].astype(np.int16)
                        - frame[::sample_step, ::sample_step]
                    ).mean()
                )
            stats[name]["mean_abs_change"].append(changes[key])
            if key in reports:
                edit_reports[name].append(
                    {
                        **reports[key],
                        "at_max_strength": bool(request.strength >= 1.0 and request.kind in ("boost", "reduce")),
                    }
                )
        return key, per_key[key]

    with atomic_directory(output_dir) as tmp, contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(
                VideoWriter(
                    tmp / f"{name}.mp4", probe.fps_fraction, audio_source=video_path, preset=preset, crf=VARIANT_CRF
                )
            )
            for name in names
        }
        comparison = stack.enter_context(
            VideoWriter(tmp / "comparison.mp4", probe.fps_fraction, audio_source=video_path, preset=preset)
        )

        def emit(
            frame_index: int,
            original: np.ndarray,
            frames_out: Mapping[str, np.ndarray],
            product: np.ndarray,
            protected: np.ndarray | None,
        ) -> None:
            """Copy protected pixels from the source into every variant's frame, encode, tile, thumbnail.

            Touches only its arguments, the writers and the thumbnails: it may run on the encoding
            thread while the next frame is edited.
            """
            nonlocal protected_pixels
            t0 = time.perf_counter()
            if protected is not None:
                protected_pixels += int(protected.sum())
                box = bounding_box(protected)
                keep = protected[box]
                for array in {id(a): a for a in frames_out.values()}.values():  # out[protect] = source[protect]
                    array[box][keep] = original[box][keep]
            outlines: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = {}

            def shown(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
                if size not in outlines:  # the masks at this size, once per frame for every tile

                    def small(m):
                        return (
                            None if m is None else cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
                        )  # noqa: E731

                    outlines[size] = (small(product), small(protected))
                return outline_regions(cv2.resize(image, size, interpolation=cv2.INTER_AREA), *outlines[size])

            tiles = [_label(shown(original, (tile_w, tile_h)), "original")]
            for name in names:
                writers[name].write(frames_out[name])
                tiles.append(_label(shown(frames_out[name], (tile_w, tile_h)), name))
            comparison.write(_grid(tiles, columns=4))
            if frame_index in contact_at:
                thumbs["original"].append(shown(original, (thumb_w, thumb_h)))
                for name in names:
                    thumbs[name].append(shown(frames_out[name], (thumb_w, thumb_h)))
            timings["encode_s"] += time.perf_counter() - t0

        if edit_every_frame:
            # Every frame is its own keyframe: edit it for each variant (one edit per distinct
            # request; side by side on two threads when the editor allows concurrent edits) and
            # write it; nothing to propagate. Frame t is encoded on another thread
            # while frame t+1 is edited (x264 and the colour conversion release the GIL), one
            # frame in flight, in order; an encoding error stops the render here.
            concurrent = bool(getattr(editor, "concurrent_edits", False))
            with (
                ThreadPoolExecutor(1, thread_name_prefix="align-encode") as encoding,
                ThreadPoolExecutor(2 if concurrent else 1, thread_name_prefix="align-edit") as editing,
            ):
                in_flight = None
                for frame_index, original in enumerate(iter_frames(video_path)):
                    if concurrent:
                        prefetch_edits(frame_index, original, editing)
                    frames_out = {name: edited_key(name, frame_index, original, True)[1] for name in names}
                    edit_cache.pop(frame_index, None)
                    report_cache.pop(frame_index, None)
                    change_cache.pop(frame_index, None)
                    inputs = inputs_at(frame_index)
                    if in_flight is not None:
                        in_flight.result()
                    in_flight = encoding.submit(
                        emit, frame_index, original, frames_out, inputs["mask"], inputs["protect"]
                    )
                if in_flight is not None:
                    in_flight.result()
        else:
            for segment in iter_segments(iter_frames(video_path), units, keyframe_stride):
                t0 = time.perf_counter()
                warps = (
                    [] if len(segment.frames) == 1 else propagator.plan_segment(segment)
                )  # one frame: nothing to carry
                timings["flow_s"] += time.perf_counter() - t0
                produced: dict[tuple[Any, ...], list[np.ndarray]] = {}
                outputs: dict[str, list[np.ndarray]] = {}
                for name in names:
                    key_prev, edit_prev = edited_key(name, segment.start, segment.frames[0], True)
                    key_next, edit_next = (None, None)
                    if segment.next_frame is not None:
                        key_next, edit_next = edited_key(name, segment.stop, segment.next_frame, False)
                    shared = (key_prev, key_next)
                    if shared not in produced:
                        kind = "placebo" if "placebo" in (key_prev[0], key_next[0] if key_next else None) else "whole"

                        def allowed(index: int, _kind: str = kind) -> np.ndarray | None:
                            return (
                                None
                                if _kind != "placebo"
                                else allowed_region("placebo", np.asarray(masks[index], bool), margin_px)
                            )

                        t0 = time.perf_counter()
                        produced[shared] = propagate_segment(propagator, segment, warps, edit_prev, edit_next, allowed)
                        timings["propagate_s"] += time.perf_counter() - t0
                    outputs[name] = produced[shared]
                for index in list(edit_cache):
                    if index < segment.stop:
                        del edit_cache[index]
                        report_cache.pop(index, None)
                        change_cache.pop(index, None)
                for offset, original in enumerate(segment.frames):
                    # propagated lists may share frames: copy before the protected pixels are restored in place
                    index = segment.start + offset
                    emit(
                        index,
                        original,
                        {name: outputs[name][offset].copy() for name in names},
                        np.asarray(masks[index], dtype=bool),
                        protect_at(index),
                    )
        stack.close()  # finish every mp4 (and its audio) before hashing
        sheet_rows = []
        for row_name, row in thumbs.items():
            labelled = [_captioned(t, f"{row_name} f{contact_at[i]}") for i, t in enumerate(row)]
            sheet_rows.append(np.concatenate(labelled, axis=1))
        sheet_path = tmp / "contact_sheet.png"
        if not cv2.imwrite(str(sheet_path), cv2.cvtColor(np.concatenate(sheet_rows, axis=0), cv2.COLOR_RGB2BGR)):
            raise OSError(f"video {video_path}: could not write contact sheet {sheet_path}")
        timings["total_s"] = time.perf_counter() - started
        manifest = {
            "video_id": plans.video_id,
            "source": {
                "path": str(video_path),
                **{
                    k: getattr(probe, k)
                    for k in (
                        "sha256",
                        "fps",
                        "fps_fraction",
                        "frame_count",
                        "width",
                        "height",
                        "has_audio",
                        "audio_codec",
                    )
                },
            },
            "inputs": {
                "masks_sha256": array_sha256(masks if hasattr(masks, "frame") else np.asarray(masks, dtype=bool)),
                "attention_sha256": array_sha256(
                    attention if hasattr(attention, "frame") else np.asarray(attention, dtype=np.float32)
                ),
            },
            "config": {
                "keyframe_stride": keyframe_stride,
                "encoder": {"codec": "libx264", "crf": VARIANT_CRF, "preset": preset, "pix_fmt": "yuv420p"},
                "keyframe_stride_requested": requested_stride,
                "edit_every_frame": bool(edit_every_frame),
                "keyframe_placement": (
                    "every frame edited with its own mask (the editor is a cheap deterministic function of frame, mask "
                    "and strength, so flow propagation would only lose the edit)"
                    if edit_every_frame
                    else "first frame of every scene and of every timing window within it, then every stride-th frame"
                ),
                "propagation_ranges": [list(r) for r in units],
                "placebo_margin": placebo_margin,
                "placebo_margin_px": margin_px,
                "variants": [variant_plans[n].spec.to_dict() for n in names],
                "scene_ranges": [list(r) for r in plans.scene_ranges],
                "strength_map": strength_map.to_dict(),
                "allowed_regions": {
                    "identity": "whole frame",
                    "boost": "whole frame",
                    "reduce": "whole frame",
                    "placebo": "outside the dilated mask",
                },
                "protected": (
                    "none given"
                    if protect is None
                    else "pixels of protect[t] copied from the source frame in every variant after editing"
                ),
            },
            "protect": {
                "given": protect is not None,
                "guard_px": protect_guard_px,
                "protected_share": protected_pixels / float(count * height * width),
                "lineage": getattr(protect, "lineage", None),
            },
            "outlines": {"product": "green", "protected": "magenta"},
            "seed": seed,
            "editor": editor.lineage(),
            "propagation": propagator.lineage(),
            "keyframes": [int(k) for k in keyframes],
            "keyframe_share": len(keyframes) / count,
            "edit_calls": edit_calls,
            "edit_calls_without_sharing": len(keyframes) * len(names),
            "variants": {
                name: {
                    "file": f"{name}.mp4",
                    "sha256": file_sha256(tmp / f"{name}.mp4"),
                    "kind": variant_plans[name].spec.kind,
                    "frames_written": writers[name].frames_written,
                    "audio_packets_written": writers[name].audio_packets_written,
                    "keyframe_kinds": {k: stats[name]["kind"].count(k) for k in sorted(set(stats[name]["kind"]))},
                    "keyframe_mean_strength": float(np.mean(stats[name]["strength"]))
                    if stats[name]["strength"]
                    else 0.0,
                    "keyframe_mean_abs_change": float(np.mean(stats[name]["mean_abs_change"]))
                    if stats[name]["mean_abs_change"]
                    else 0.0,
                    "edit_limits": edit_limits(edit_reports[name]),
                }
                for name in names
            },
            "comparison": {
                "file": "comparison.mp4",
                "sha256": file_sha256(tmp / "comparison.mp4"),
                "columns": 4,
                "tiles": ["original", *names],
            },
            "contact_sheet": {"file": "contact_sheet.png", "sha256": file_sha256(sheet_path), "frames": contact_at},
            "timings_s": timings,
            "extra": dict(extra_lineage or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    out = Path(output_dir)
    return RenderResult(
        output_dir=out,
        variant_paths={name: out / f"{name}.mp4" for name in names},
        comparison_path=out / "comparison.mp4",
        contact_sheet_path=out / "contact_sheet.png",
        manifest_path=out / "manifest.json",
        keyframes=tuple(int(k) for k in keyframes),
        keyframe_share=len(keyframes) / count,
        edit_calls=edit_calls,
        timings=timings,
        manifest=manifest,
    )
