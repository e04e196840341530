"""Calibrate, render and check one video: the sequence the ``variant_videos`` and ``variant_quality``
assets run, as plain functions so a bench or a notebook runs exactly the same thing.

- :func:`calibrate_and_render`: pick calibration keyframes (model-free editors only), measure the
  editor's strength map with the checking attention function, render every variant.
- :func:`calibrate_render_check`: the above, then the manipulation check: with independent scorers
  :func:`~align_core.measurement.manipulation.verify_variants` (calibrating scorer + independent majority +
  perceptual budget + unreachable windows), without them
  :func:`~align_core.measurement.manipulation.check_rendered_variants` (calibrating scorer only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from align_core.io.video_io import read_frame
from align_core.measurement.manipulation import (
    AttentionFn,
    CalibrationPoint,
    CheckThresholds,
    ManipulationReport,
    VerificationSettings,
    calibrate_strength_map,
    check_rendered_variants,
    verify_variants,
)
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.stimuli.editing.regions import guarded_protect
from align_core.stimuli.editing.render import render_variants
from align_core.stimuli.editing.render_request import StrengthMap
from align_core.stimuli.editing.renderer import RenderResult
from align_core.stimuli.plans import VariantPlans

__all__ = [
    "calibrate_and_render",
    "calibrate_for_video",
    "calibrate_render_check",
    "edit_limits_from_manifest",
]


@dataclass
class PipelineResult:
    render: RenderResult
    strength_map: StrengthMap | None
    calibration: list[CalibrationPoint] = field(default_factory=list)
    report: ManipulationReport | None = None
    timings: dict[str, float] = field(default_factory=dict)


def calibration_picks(masks: np.ndarray, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over the frames whose product is visible."""
    if hasattr(masks, "any_per_frame"):  # per-frame compressed masks: no dense stack
        with_product = np.flatnonzero(masks.any_per_frame())
    else:
        masks = np.asarray(masks)
        with_product = np.flatnonzero(masks.reshape(masks.shape[0], -1).any(axis=1))
    if with_product.size == 0 or count <= 0:
        return np.zeros(0, dtype=int)
    return with_product[np.linspace(0, len(with_product) - 1, min(count, len(with_product))).round().astype(int)]


class _ProtectedCalibrationEditor:
    """The editor as the renderer applies it: protected pixels (guarded) copied back from the frame.

    Calibration must measure the edit the viewer will see; with text protected, a boost that
    used to grey the captions out moves the product's share far less (measured on a demo ad with
    the default scorer: 0.32 -> 0.40 unprotected, 0.32 -> 0.35 protected). Frames are matched
    by identity: the calibration passes the very arrays it was given.
    """

    def __init__(self, editor: KeyframeEditor, frames: list[np.ndarray], protects: list[np.ndarray | None]):
        self.inner = editor
        self.name = editor.name
        self._protect = {id(frame): region for frame, region in zip(frames, protects, strict=False)}

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        region = self._protect.get(id(request.frame))
        if region is not None:
            request = replace(request, allowed=request.allowed & ~region, protect=region)
        edited = np.asarray(self.inner.edit(request))
        return edited if region is None else np.where(region[..., None], request.frame, edited)

    def lineage(self) -> dict[str, Any]:
        return self.inner.lineage()


def calibrate_for_video(
    editor: KeyframeEditor,
    video_path: str | os.PathLike[str],
    masks: np.ndarray,
    attention_fn: AttentionFn,
    calibration_frames: int = 6,
    seed: int = 0,
    protect: Any = None,
    protect_guard_px: int = 8,
) -> tuple[StrengthMap, list[CalibrationPoint]]:
    """The editor's strength map measured on ``calibration_frames`` keyframes of the video.

    With ``protect`` the edits are measured with protected pixels restored, as rendered.
    """
    picks = calibration_picks(masks, calibration_frames)
    frames = [read_frame(video_path, int(t)) for t in picks]
    if protect is not None:
        regions = [guarded_protect(np.asarray(protect[int(t)], bool), protect_guard_px) for t in picks]
        editor = _ProtectedCalibrationEditor(editor, frames, regions)  # type: ignore[assignment]
    return calibrate_strength_map(editor, frames, [np.asarray(masks[t], bool) for t in picks], attention_fn, seed=seed)


def calibrate_and_render(
    video_path: str | os.PathLike[str],
    plans: VariantPlans,
    masks: np.ndarray,
    attention: np.ndarray,
    editor: KeyframeEditor,
    output_dir: str | os.PathLike[str],
    attention_fn: AttentionFn | None,
    *,
    calibration_frames: int = 6,
    keyframe_stride: int = 8,
    seed: int = 0,
    extra_lineage: Mapping[str, Any] | None = None,
    edit_every_frame: bool | None = None,
    protect: Any = None,
    encoder_preset: str = "auto",
) -> PipelineResult:
    """Calibrate (when ``attention_fn`` is given and the editor ``calibrates``) and render.

    ``edit_every_frame`` None follows the editor (see :func:`render_variants`); False forces
    keyframe edits carried by optical flow. ``protect`` (per frame bool masks, e.g. a
    :class:`~align_core.perception.protect.ProtectedRegions`) is never edited in any variant.
    """
    import time

    timings: dict[str, float] = {}
    strength_map, calibration = None, []
    t0 = time.perf_counter()
    if attention_fn is not None and editor.calibrates:
        strength_map, calibration = calibrate_for_video(
            editor, video_path, masks, attention_fn, calibration_frames, seed, protect
        )
    timings["calibrate_s"] = time.perf_counter() - t0
    lineage = dict(extra_lineage or {})
    lineage.setdefault("calibration", [vars(point) for point in calibration])
    t0 = time.perf_counter()
    result = render_variants(
        video_path,
        plans,
        masks,
        attention,
        editor,
        output_dir,
        keyframe_stride=keyframe_stride,
        seed=seed,
        strength_map=strength_map,
        extra_lineage=lineage,
        edit_every_frame=edit_every_frame,
        protect=protect,
        encoder_preset=encoder_preset,
    )
    timings["render_s"] = time.perf_counter() - t0
    return PipelineResult(result, strength_map, calibration, None, timings)


def calibrate_render_check(
    video_path: str | os.PathLike[str],
    plans: VariantPlans,
    masks: np.ndarray,
    attention: np.ndarray,
    editor: KeyframeEditor,
    output_dir: str | os.PathLike[str],
    attention_fn: AttentionFn,
    *,
    calibration_frames: int = 6,
    keyframe_stride: int = 8,
    seed: int = 0,
    thresholds: CheckThresholds | None = None,
    measure_every: int = 2,
    extra_lineage: Mapping[str, Any] | None = None,
    independent: Mapping[str, AttentionFn] | None = None,
    verification: VerificationSettings | None = None,
    protect: Any = None,
) -> PipelineResult:
    """:func:`calibrate_and_render`, then the manipulation check on the rendered files.

    ``thresholds`` and ``verification`` default to :class:`CheckThresholds` and
    :class:`VerificationSettings` with their defaults.
    """
    import time

    thresholds = CheckThresholds() if thresholds is None else thresholds
    verification = VerificationSettings() if verification is None else verification

    out = calibrate_and_render(
        video_path,
        plans,
        masks,
        attention,
        editor,
        output_dir,
        attention_fn,
        calibration_frames=calibration_frames,
        keyframe_stride=keyframe_stride,
        seed=seed,
        extra_lineage=extra_lineage,
        protect=protect,
    )
    t0 = time.perf_counter()
    if independent:
        out.report = verify_variants(
            plans,
            Path(video_path),
            out.render.variant_paths,
            masks,
            attention_fn,
            independent,
            thresholds,
            verification,
            every=measure_every,
            protect=protect,
            limits=edit_limits_from_manifest(out.render.manifest),
        )
    else:
        out.report = check_rendered_variants(
            plans, Path(video_path), out.render.variant_paths, masks, attention_fn, thresholds, every=measure_every
        )
    out.timings["check_s"] = time.perf_counter() - t0
    return out


def edit_limits_from_manifest(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, the editor's per-window limit records (``edit_limits``) from a render manifest."""
    return {name: dict(entry.get("edit_limits") or {}) for name, entry in (manifest.get("variants") or {}).items()}
