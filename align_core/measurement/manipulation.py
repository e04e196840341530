"""The manipulation check: did each variant move the product's share of attention as planned?

The same attention function and the same masks are run on the original and on every variant's
decoded frames; achieved alignment ``a_t = sum(A_t M_t) / sum(A_t)`` is averaged per window
(early / middle / late thirds by centre time, and ``all``) and compared with the plan.

At real size (:func:`verify_variants` with ``frames``, ``budget_frames``, ``analysis_max_side``,
as the quality stage runs it) one lockstep decode feeds everything: the scorers run on a frame
sample (every k-th frame of each scene-window segment plus its first and last,
:mod:`align_core.measurement.frame_sampling`) at the analysis resolution, where alignment is
``sum(A c) / sum(A)`` with ``c`` the mask's per-block coverage (at factor 1 exactly
``sum(A M) / sum(A)``); the perceptual budget is re-checked at full resolution on its own sample,
and a sampled budget says so in the budget table (``budget_sampled``) and in every verdict.

Rules (thresholds in :class:`CheckThresholds`):

- where the plan changes alignment (``|target_delta| > eps``), the achieved change must have the
  intended sign and reach ``min_share`` of the planned size, measured against the baseline
  VARIANT (same pipeline, same re-encoding and editing artefacts, zero control change). The
  change against the original is always reported; it is required too only with
  ``require_vs_original`` because re-encoding alone moves a texture-sensitive scorer by about
  0.02 (measured on the synthetic test ad), which the baseline exists to absorb;
- where a boost/reduction plans no change (outside its window), it must stay within
  ``off_window_tolerance`` of the baseline variant (timing variants differ only in timing);
- baseline must stay within ``tolerance`` of the original (this bounds the codec drift above);
  placebo within ``tolerance`` of the baseline variant (DESIGN.md's placebo contract), and of
  the original too with ``require_vs_original``;
- a boost/reduction whose own window plans no change at all (no product frames there, or the
  alignment already at its bound) cannot differ from baseline: it is ``not_manipulable``, never
  passed, whatever it measures.

Every row and verdict carries a ``status``: ``passed``, ``failed`` or ``not_manipulable``.

``attention_fn`` is whatever scorer the caller trusts (the platform passes its real scorer; tests
pass a weight-free map); the check is only as good as that scorer, and its name is recorded.
:func:`calibrate_strength_map` uses the same function, once per video, to measure how much
alignment an editor's strengths actually move on that video's keyframes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from align_core.io.video_io import iter_frames, lockstep_frames
from align_core.measurement.perceptual_budget import (
    DEFAULT_MAX_DELTA_E,
    DEFAULT_MIN_SSIM,
    LIMITS,
    MEASURES,
    PerceptualBudget,
)
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.stimuli.editing.render_request import StrengthMap
from align_core.stimuli.plans import TIME_WINDOWS, VariantPlan, VariantPlans

__all__ = [
    "AttentionFn",
    "CalibrationPoint",
    "CheckThresholds",
    "ManipulationReport",
    "NOT_DECIDING",
    "VerificationSettings",
    "alignment",
    "calibrate_strength_map",
    "check_rendered_variants",
    "deciding_rows",
    "manipulation_check",
    "measure_alignment",
    "measure_rendered",
    "scaled_alignment",
    "scorer_agrees",
    "verify_variants",
]

AttentionFn = Callable[[np.ndarray], np.ndarray]


def alignment(attention: np.ndarray, mask: np.ndarray) -> float:
    """a = sum(A M) / sum(A); 0 for an all-zero attention map."""
    attention = np.asarray(attention, dtype=np.float64)
    total = float(attention.sum())
    return float((attention * np.asarray(mask, dtype=bool)).sum() / total) if total > 0 else 0.0


def measure_alignment(
    frames: Iterable[np.ndarray], masks: np.ndarray, attention_fn: AttentionFn, every: int = 1
) -> np.ndarray:
    """Achieved alignment per frame (NaN on frames skipped by ``every``)."""
    values: list[float] = []
    for index, frame in enumerate(frames):
        if index >= len(masks):
            raise ValueError(f"more frames than masks ({len(masks)})")
        if index % every:
            values.append(float("nan"))
            continue
        attention = np.asarray(attention_fn(frame), dtype=np.float32)
        if attention.shape != frame.shape[:2]:
            raise ValueError(f"attention_fn returned {attention.shape} for a frame of {frame.shape[:2]}")
        values.append(alignment(attention, masks[index]))
    if len(values) != len(masks):
        raise ValueError(f"{len(values)} frames but {len(masks)} masks")
    return np.asarray(values, dtype=np.float64)


def measure_video_alignment(
    path: str | os.PathLike[str], masks: np.ndarray, attention_fn: AttentionFn, every: int = 1
) -> np.ndarray:
    """Achieved alignment per frame of the video at ``path`` (decoded, as a viewer sees it).

    A render of an odd-size source is read back at the masks' size (the writer pads to even).
    """
    try:
        return measure_alignment(iter_frames(path, crop_to=np.asarray(masks).shape[1:3]), masks, attention_fn, every)
    except ValueError as exc:
        raise ValueError(f"video {Path(path)}: {exc}") from exc


@dataclass(frozen=True)
class CheckThresholds:
    min_share: float = 0.25  # achieved change >= this share of the planned change, with its sign
    tolerance: float = 0.03  # baseline/placebo: max |mean alignment difference| (absolute)
    off_window_tolerance: float = 0.05  # boosts/reductions outside their window vs baseline
    eps: float = 1e-6  # a planned change smaller than this counts as no change
    require_vs_original: bool = False  # also require the share/tolerance against the original


@dataclass
class ManipulationReport:
    table: pd.DataFrame  # one row per (variant, window)
    verdicts: pd.DataFrame  # one row per variant
    thresholds: CheckThresholds
    attention_fn_name: str
    scorer_table: pd.DataFrame | None = None  # one row per (variant, window, scorer): every scorer's view
    budget: pd.DataFrame | None = None  # one row per variant: perceptual budget figures on the rendered video

    @property
    def passed(self) -> bool:
        return bool(self.verdicts["passed"].all())

    def status(self, variant: str) -> str:
        verdicts = self.verdicts.set_index("variant")
        if "status" in verdicts.columns:
            return str(verdicts.loc[variant, "status"])
        return "passed" if bool(verdicts.loc[variant, "passed"]) else "failed"

    def verdict(self, variant: str) -> bool:
        return bool(self.verdicts.set_index("variant").loc[variant, "passed"])


def _fn_name(fn: Callable[..., object]) -> str:
    return getattr(fn, "name", None) or getattr(fn, "__qualname__", None) or type(fn).__name__


def manipulation_check(
    plans: VariantPlans,
    achieved: Mapping[str, np.ndarray],
    original_achieved: np.ndarray,
    thresholds: CheckThresholds = CheckThresholds(),
    attention_fn_name: str = "unspecified",
    product_frames: np.ndarray | None = None,
) -> ManipulationReport:
    """Compare achieved alignment (per variant, per frame; NaN = not measured) with the plan.

    ``original_achieved`` is the original video measured with the same attention function; the
    plan's own ``original_alignment`` should come from that scorer too (target deltas are the
    plan's). ``product_frames`` (bool per frame: the product mask is non-empty) names why a
    variant is not manipulable; by default frames with non-zero planned alignment.
    """
    baseline = plans.baseline_name()
    if product_frames is None:
        product_frames = np.asarray(plans.original_alignment) > 0
    product_frames = np.asarray(product_frames, dtype=bool)
    if baseline not in achieved:
        raise KeyError(
            f"video {plans.video_id}: the manipulation check needs the baseline variant {baseline!r} measured"
        )
    original_achieved = _checked_curve(plans, original_achieved, "original alignment")
    base_curve = np.asarray(achieved[baseline], dtype=np.float64)
    windows = np.asarray(plans.frame_windows)
    rows = []
    for name, curve in achieved.items():
        plan = plans[name]
        not_manipulable = _not_manipulable(plan, plans, windows, product_frames, thresholds.eps)
        curve = _checked_curve(plans, curve, f"variant {name} alignment")
        for window in (*TIME_WINDOWS, "all"):
            in_window = np.ones(plans.frame_count, bool) if window == "all" else windows == window
            measured = in_window & np.isfinite(curve) & np.isfinite(original_achieved) & np.isfinite(base_curve)
            if measured.any():
                means = _WindowMeans.of(plans, plan, measured, curve, original_achieved, base_curve, thresholds.eps)
                rows.append(_check_row(plans, name, plan.spec.kind, window, means, thresholds, not_manipulable))
    table = pd.DataFrame(rows)
    table["video_id"] = table["video_id"].astype("string")
    table["decides"] = deciding_rows(plans, table)
    return ManipulationReport(table, _check_verdicts(plans.video_id, table), thresholds, attention_fn_name)


def _checked_curve(plans: VariantPlans, curve: np.ndarray, what: str) -> np.ndarray:
    """``curve`` as float64, one value per frame of the plan (ValueError otherwise)."""
    curve = np.asarray(curve, dtype=np.float64)
    count = plans.frame_count
    if curve.shape != (count,):
        raise ValueError(f"video {plans.video_id}: {what} has shape {curve.shape}, expected ({count},)")
    return curve


@dataclass(frozen=True)
class _WindowMeans:
    """One variant's alignment figures averaged over the measured frames of one window."""

    frames: int
    original: float
    planned_original: float
    base: float
    value: float
    target: float
    target_delta: float
    share: float
    share_original: float

    @property
    def delta_base(self) -> float:
        return self.value - self.base

    @property
    def delta_original(self) -> float:
        return self.value - self.original

    @classmethod
    def of(
        cls,
        plans: VariantPlans,
        plan: VariantPlan,
        measured: np.ndarray,
        curve: np.ndarray,
        original_achieved: np.ndarray,
        base_curve: np.ndarray,
        eps: float,
    ) -> _WindowMeans:
        original = float(original_achieved[measured].mean())
        base = float(base_curve[measured].mean())
        value = float(curve[measured].mean())
        target_delta = float((plan.frame_target[measured] - plans.original_alignment[measured]).mean())
        planned = abs(target_delta) > eps
        return cls(
            frames=int(measured.sum()),
            original=original,
            planned_original=float(plans.original_alignment[measured].mean()),
            base=base,
            value=value,
            target=float(plan.frame_target[measured].mean()),
            target_delta=target_delta,
            share=(value - base) / target_delta if planned else float("nan"),
            share_original=(value - original) / target_delta if planned else float("nan"),
        )


def _check_rule(kind: str, means: _WindowMeans, thresholds: CheckThresholds) -> tuple[bool, str]:
    """The calibrating rule for one (variant, window) that can be manipulated: (passed, reason)."""
    delta_base, delta_original = means.delta_base, means.delta_original
    if abs(means.target_delta) > thresholds.eps:
        passed = means.share >= thresholds.min_share
        if thresholds.require_vs_original:
            passed = passed and means.share_original >= thresholds.min_share
        return passed, (
            f"achieved {means.share:.0%} of the planned change vs baseline ({means.share_original:.0%} vs original); "
            f"need >= {thresholds.min_share:.0%} with the planned sign"
        )
    if kind == "identity":
        passed = abs(delta_original) <= thresholds.tolerance
        return passed, f"|change vs original| = {abs(delta_original):.3f} (tolerance {thresholds.tolerance})"
    if kind == "placebo":
        passed = abs(delta_base) <= thresholds.tolerance
        if thresholds.require_vs_original:
            passed = passed and abs(delta_original) <= thresholds.tolerance
        return passed, (
            f"|change vs baseline| = {abs(delta_base):.3f}, vs original = {abs(delta_original):.3f} "
            f"(tolerance {thresholds.tolerance})"
        )
    passed = abs(delta_base) <= thresholds.off_window_tolerance
    return (
        passed,
        f"outside its window: |change vs baseline| = {abs(delta_base):.3f} (tolerance {thresholds.off_window_tolerance})",
    )


def _check_row(
    plans: VariantPlans,
    name: str,
    kind: str,
    window: str,
    means: _WindowMeans,
    thresholds: CheckThresholds,
    not_manipulable: str | None,
) -> dict[str, Any]:
    """One row of the check's table: the window's figures, status and reason."""
    if not_manipulable:
        passed, status, reason = False, "not_manipulable", not_manipulable
    else:
        passed, rule = _check_rule(kind, means, thresholds)
        status, reason = ("passed" if passed else "failed"), rule
    return {
        "video_id": plans.video_id,
        "variant": name,
        "kind": kind,
        "window": window,
        "frames_measured": means.frames,
        "original_alignment": means.original,
        "planned_original_alignment": means.planned_original,
        "baseline_alignment": means.base,
        "target_alignment": means.target,
        "achieved_alignment": means.value,
        "target_delta": means.target_delta,
        "achieved_delta": means.delta_base,
        "achieved_delta_vs_original": means.delta_original,
        "share_achieved": means.share,
        "share_achieved_vs_original": means.share_original,
        "passed": bool(passed),
        "status": status,
        "reason": reason,
    }


def _averages_decided_rows(plans: VariantPlans, variant: str, window: str) -> bool:
    """Whether a check row only averages rows that decide the verdict: the ``all`` row of a variant
    edited in one time window. Its early, middle and late rows each decide (the change in its own
    window, none in the others); the ``all`` row also counts the two thirds of the video it does not
    edit, so the independent scorers' absolute vote threshold would meet a third of the change."""
    return window == "all" and plans[variant].spec.window in TIME_WINDOWS


def deciding_rows(plans: VariantPlans, table: pd.DataFrame) -> pd.Series:
    """True for the rows of a check table that decide their variant's verdict."""
    averaged = [_averages_decided_rows(plans, v, w) for v, w in zip(table["variant"], table["window"], strict=True)]
    return pd.Series(np.logical_not(averaged), index=table.index, dtype=bool)


NOT_DECIDING = "not deciding: the average of the window rows above over the whole video"


def _check_verdicts(video_id: str, table: pd.DataFrame) -> pd.DataFrame:
    """One verdict per variant of the calibrating check: passed when every deciding window passed."""
    verdicts = []
    for name, group in table[table["decides"]].groupby("variant", sort=False):
        failing = group[~group["passed"]]
        if failing.empty:
            status, reason = "passed", "all windows passed"
        elif (group["status"] == "not_manipulable").all():
            status, reason = "not_manipulable", group["reason"].iloc[0]
        else:
            status = "failed"
            reason = "; ".join(f"{w}: {r}" for w, r in zip(failing["window"], failing["reason"], strict=False))
        verdicts.append(
            {"video_id": video_id, "variant": name, "passed": failing.empty, "status": status, "reason": reason}
        )
    verdict_table = pd.DataFrame(verdicts)
    verdict_table["video_id"] = verdict_table["video_id"].astype("string")
    return verdict_table


def _not_manipulable(
    plan, plans: VariantPlans, windows: np.ndarray, product_frames: np.ndarray, eps: float
) -> str | None:
    """Why a boost/reduction cannot differ from baseline (None when it can): its window plans no change."""
    spec = plan.spec
    if spec.kind not in ("boost", "reduce"):
        return None
    own = np.ones(len(windows), bool) if spec.window == "full" else windows == spec.window
    planned = np.abs(
        np.asarray(plan.frame_target, dtype=np.float64)[own]
        - np.asarray(plans.original_alignment, dtype=np.float64)[own]
    )
    if own.any() and planned.max(initial=0.0) > eps:
        return None
    if not product_frames[own].any():
        return f"not manipulable: no product frames in its {spec.window} window (it cannot differ from baseline)"
    return f"not manipulable: its {spec.window} window plans no change (alignment already at its bound)"


def check_rendered_variants(
    plans: VariantPlans,
    original_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    masks: np.ndarray,
    attention_fn: AttentionFn,
    thresholds: CheckThresholds = CheckThresholds(),
    every: int = 1,
) -> ManipulationReport:
    """Measure the original and every rendered variant with ``attention_fn`` and run the check."""
    original = measure_video_alignment(original_path, masks, attention_fn, every)
    achieved = {name: measure_video_alignment(path, masks, attention_fn, every) for name, path in variant_paths.items()}
    product_frames = np.array(
        [bool(np.asarray(masks[index]).any()) for index in range(len(masks))]
    )  # one frame at a time
    return manipulation_check(
        plans, achieved, original, thresholds, _fn_name(attention_fn), product_frames=product_frames
    )


@dataclass(frozen=True)
class CalibrationPoint:
    kind: str
    strength: float
    mean_log_ratio: float
    keyframes: int


def calibrate_strength_map(
    editor: KeyframeEditor,
    frames: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    attention_fn: AttentionFn,
    strengths: Sequence[float] = (0.125, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
    min_alignment: float = 1e-3,
    protect: Sequence[np.ndarray] | None = None,
) -> tuple[StrengthMap, list[CalibrationPoint]]:
    """Measure ``log(a'/a)`` at a few strengths on sample keyframes; return the inverse mapping.

    One-shot and per video: edit each sample frame (boost and reduce) at each strength, score it
    with ``attention_fn``, and record ``log(sum a' / sum a)`` over frames whose product is present
    (``mean_log_ratio``: the log ratio of the MEAN alignment, which is what the check compares). The renderer then picks, per keyframe, the strength whose measured effect reaches
    the target (strength 1 where even full strength falls short).
    """
    usable = []
    guards = list(protect) if protect is not None else [None] * len(frames)
    for frame, mask, guard in zip(frames, masks, guards, strict=False):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        attention = np.asarray(attention_fn(frame), dtype=np.float32)
        base = alignment(attention, mask)
        if base >= min_alignment:
            usable.append((frame, mask, base, attention, guard))
    if not usable:
        raise ValueError("calibration needs at least one frame with a visible product and non-zero alignment")
    points: list[CalibrationPoint] = []
    tables: dict[str, list[float]] = {"boost": [0.0], "reduce": [0.0]}
    for kind in ("boost", "reduce"):
        for strength in sorted(strengths):
            edited_alignment = []
            for frame, mask, base, attention, guard in usable:
                request = KeyframeEditRequest(
                    frame=frame,
                    mask=mask,
                    attention=attention,
                    target_control=np.stack([mask.astype(np.float32), attention * mask]),
                    original_alignment=base,
                    target_alignment=base,
                    allowed=np.ones(mask.shape, bool),
                    kind=kind,
                    strength=float(strength),
                    seed=seed,
                    protect=guard,  # type: ignore[arg-type]
                )
                edited = editor.edit(request)
                edited_alignment.append(alignment(attention_fn(edited), mask))
            # The check compares MEAN alignment per window, so frames weigh by their alignment:
            # log(sum a' / sum a), not the mean of per-frame log ratios (which a nearly-absent
            # product, whose tiny share moves by large ratios, would dominate).
            mean = math.log(max(float(np.sum(edited_alignment)), 1e-9) / float(sum(item[2] for item in usable)))
            points.append(CalibrationPoint(kind, float(strength), mean, len(usable)))
            tables[kind].append(mean)
    ordered = (0.0, *sorted(float(s) for s in strengths))
    strength_map = StrengthMap(
        boost_strengths=ordered,
        boost_log_ratio=tuple(tables["boost"]),
        reduce_strengths=ordered,
        reduce_log_ratio=tuple(tables["reduce"]),
        source=f"calibrated on {len(usable)} keyframes with {_fn_name(attention_fn)} ({editor.name})",
    )
    return strength_map, points


# -- independent verification, perceptual budget and status ----------------------------------------

STATUSES = ("passed", "failed", "not_manipulable", "unreachable", "unchecked")


@dataclass(frozen=True)
class VerificationSettings:
    """How independent scorers vote and how the budget and placebo magnitude are checked.

    An independent scorer agrees with a planned change when its achieved change against the
    baseline variant has the planned sign and is at least ``sign_min_delta`` (absolute; on the
    demo, frames a variant does not edit differ from the baseline variant under these scorers by
    at most 3e-4, codec noise); with no planned change it agrees when it stays within the
    calibrating thresholds' tolerance. The placebo's mean CIEDE2000 outside product
    and protected regions must be within ``placebo_magnitude_range`` times the matched boost's.
    """

    sign_min_delta: float = 0.001
    placebo_magnitude_range: tuple[float, float] = (0.75, 1.33)
    min_ssim: float = DEFAULT_MIN_SSIM
    max_delta_e: float = DEFAULT_MAX_DELTA_E
    #: the other limits of :class:`PerceptualBudget` by name, as (name, value) pairs (unset: their defaults)
    budget_limits: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        self.budget  # noqa: B018 -- builds the budget: an unknown or out-of-range limit is refused here

    @property
    def budget(self) -> PerceptualBudget:
        """The mean limits from these settings, every other limit from ``budget_limits`` or its default."""
        return PerceptualBudget.from_settings(self.min_ssim, self.max_delta_e, dict(self.budget_limits))


def scorer_agrees(rows: pd.DataFrame, thresholds: CheckThresholds, settings: VerificationSettings) -> pd.Series:
    planned = rows["target_delta"].abs() > thresholds.eps
    sign = np.sign(rows["target_delta"])
    moved = rows["achieved_delta"] * sign >= settings.sign_min_delta
    tolerance = np.where(
        rows["kind"].isin(["identity", "placebo"]), thresholds.tolerance, thresholds.off_window_tolerance
    )
    change = np.where(rows["kind"] == "identity", rows["achieved_delta_vs_original"], rows["achieved_delta"])
    still = np.abs(change) <= tolerance
    return pd.Series(np.where(planned, moved, still), index=rows.index, dtype=bool)


def scaled_alignment(attention: np.ndarray, coverage: np.ndarray) -> float:
    """``sum(A c) / sum(A)`` with ``c`` the product mask's per-pixel (bool) or per-block (share) coverage; 0 when ``A`` is all zero."""
    attention = np.asarray(attention, dtype=np.float32)
    total = float(attention.sum(dtype=np.float64))
    if total <= 0:
        return 0.0
    if coverage.dtype == bool:
        return float(attention[coverage].sum(dtype=np.float64) / total)
    return float(np.dot(attention.ravel(), np.asarray(coverage, dtype=np.float32).ravel()) / total)  # float32 BLAS dot


def measure_rendered(
    original_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    baseline: str,
    masks: np.ndarray,
    scorers: Mapping[str, AttentionFn],
    protect: np.ndarray | None = None,
    every: int = 1,
    frames: Sequence[int] | None = None,
    budget_frames: Sequence[int] | None = None,
    analysis_max_side: int | None = None,
    on_frame: Callable[[int, tuple[np.ndarray, ...]], None] | None = None,
    on_frame_frames: Iterable[int] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], pd.DataFrame]:
    """One lockstep decode of the original and every variant: alignment under every scorer, and the
    budget of each variant vs baseline.

    Returns (original curve per scorer, {scorer: {variant: curve}}, per-frame budget rows with
    columns variant, frame, ssim, delta_e, product_present). Scorers run on ``frames`` (default:
    every ``every``-th frame; NaN elsewhere), on the frame averaged down to the analysis
    resolution of :mod:`align_core.measurement.frame_sampling` (``analysis_max_side``; None: full
    resolution), with the product mask averaged alike into per-block coverage (alignment
    ``sum(A c) / sum(A)``; exactly ``sum(A M) / sum(A)`` at factor 1). The budget is measured at
    full resolution (:func:`align_core.measurement.perceptual_budget.measure`) outside ``mask OR protect``
    against the baseline variant on ``budget_frames`` (default: EVERY frame). ``on_frame(index,
    (original, *variants))`` sees the frame tuples at ``on_frame_frames`` (default every frame;
    variants in ``variant_paths`` order), so other measurements
    (:class:`align_core.measurement.quality.QualityPass`) share this one decode. Frames nobody needs are
    decoded but never converted to RGB.
    """
    from align_core.measurement.frame_sampling import analysis_factor

    count = len(masks)
    size = tuple(int(v) for v in masks.shape[1:3])  # a render of an odd-size source is read back at the masks' size
    check = {i for i in range(count) if i % every == 0} if frames is None else {int(i) for i in frames}
    budget_at = set(range(count)) if budget_frames is None else {int(i) for i in budget_frames}
    factor = analysis_factor(size[0], size[1], analysis_max_side)
    names = list(variant_paths)
    if baseline not in names:
        raise KeyError(f"the budget needs the baseline variant {baseline!r} rendered")
    paths = [Path(original_path)] + [Path(variant_paths[n]) for n in names]
    measurement = _RenderedMeasurement(
        [paths[0], *(variant_paths[n] for n in names)], names, baseline, masks, scorers, protect, factor
    )
    riding = None if on_frame is None else (None if on_frame_frames is None else {int(i) for i in on_frame_frames})

    def rides(index: int) -> bool:
        return on_frame is not None and (riding is None or index in riding)

    def wanted(index: int) -> bool:
        return index in check or index in budget_at or rides(index)

    decoded = 0
    for index, current in enumerate(lockstep_frames(paths, size, wanted)):
        decoded += 1
        if index >= count:
            raise ValueError(f"video {paths[0]}: more frames than masks ({count})")
        if rides(index):
            on_frame(index, current)
        if index in check:
            measurement.score(index, current)
        if index in budget_at:
            measurement.budget(index, current)
    if decoded != count:
        raise ValueError(f"video {paths[0]}: {decoded} frames but {count} masks")
    return measurement.result()


class _RenderedMeasurement:
    """What :func:`measure_rendered` gathers frame by frame: alignment curves per scorer and video
    (``""``: the original), and the per-frame budget rows of every variant against baseline."""

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        names: list[str],
        baseline: str,
        masks: np.ndarray,
        scorers: Mapping[str, AttentionFn],
        protect: np.ndarray | None,
        factor: int,
    ) -> None:
        self.sources, self.names, self.masks, self.scorers = sources, names, masks, scorers
        self.protect, self.factor = protect, factor
        self.base_slot = 1 + names.index(baseline)
        count = len(masks)
        self.curves = {scorer: {video: np.full(count, np.nan) for video in ["", *names]} for scorer in scorers}
        self.budget_rows: list[dict[str, Any]] = []

    def score(self, index: int, current: Sequence[np.ndarray]) -> None:
        """Alignment of frame ``index`` of every video under every scorer, at the analysis resolution."""
        from align_core.measurement.frame_sampling import downscale, downscale_mask

        coverage = downscale_mask(np.asarray(self.masks[index], dtype=bool), self.factor)
        for slot, (video, frame) in enumerate(zip(["", *self.names], current, strict=False)):
            small = downscale(frame, self.factor)
            for name, fn in self.scorers.items():
                attention = np.asarray(fn(small), dtype=np.float32)
                if attention.shape != small.shape[:2]:
                    raise ValueError(
                        f"video {self.sources[slot]}: scorer {name} returned {attention.shape} "
                        f"for a frame of {small.shape[:2]}"
                    )
                self.curves[name][video][index] = scaled_alignment(attention, coverage)

    def budget(self, index: int, current: Sequence[np.ndarray]) -> None:
        """The budget of every variant's frame ``index`` against the baseline's, at full resolution."""
        from align_core.measurement.perceptual_budget import BudgetReference

        mask = np.asarray(self.masks[index], dtype=bool)
        protect = self.protect
        guard = None if protect is None else np.asarray(protect[min(index, len(protect) - 1)], dtype=bool)
        reference = BudgetReference(current[self.base_slot], mask, guard)  # == measure(baseline, edited, mask, guard)
        for slot, variant in enumerate(self.names, start=1):
            if slot == self.base_slot:
                continue
            figures = reference.measure(current[slot]).to_dict()
            self.budget_rows.append(
                {
                    "variant": variant,
                    "frame": index,
                    **{name: figures[name] for name in MEASURES},
                    "product_present": bool(mask.any()),
                }
            )

    def result(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], pd.DataFrame]:
        curves = self.curves
        original = {name: curves[name][""] for name in self.scorers}
        achieved = {name: {video: curves[name][video] for video in self.names} for name in self.scorers}
        budget = pd.DataFrame(self.budget_rows, columns=["variant", "frame", *MEASURES, "product_present"])
        return original, achieved, budget


def _matched_boost(plans: VariantPlans) -> str | None:
    boosts = [name for name, plan in plans.plans.items() if plan.spec.kind == "boost"]
    full = [name for name in boosts if plans[name].spec.window == "full"]
    return (full or boosts or [None])[0]


def _budget_scope(budget_by_variant: pd.DataFrame, variant: str) -> str:
    """How much of the video the budget verdict covers, for the verdict's reason."""
    if variant not in budget_by_variant.index:
        return " (the baseline is the budget's reference)"
    figures = budget_by_variant.loc[variant]
    if not bool(figures["budget_sampled"]):
        return " on every frame"
    return f" on the {int(figures['frames'])} sampled frames of {int(figures['frames_in_video'])} (not every frame)"


def _worst_figures(group: pd.DataFrame) -> dict[str, float]:
    """Per local and product measure, its worst value over the frames (the side its limits bound)."""
    worst: dict[str, float] = {}
    for limit in LIMITS[2:]:
        if limit.measure not in group:
            continue
        column = group[limit.measure].fillna(limit.neutral)
        key = f"{'min' if limit.lower else 'max'}_{limit.measure}"
        worst[key] = float(column.min() if limit.lower else column.max())
    return worst


def _exceeded(over: pd.DataFrame, budget: PerceptualBudget) -> list[str]:
    """Each limit some frame exceeded, with how many frames and the worst value (for the verdict)."""
    problems = []
    for limit in LIMITS:
        if limit.measure not in over or over.empty:
            continue
        values = over[limit.measure].fillna(limit.neutral)
        bad = values[limit.excess(values, getattr(budget, limit.setting)) > 0]
        if len(bad):
            worst = float(bad.min() if limit.lower else bad.max())
            problems.append(f"{limit.describe(worst, getattr(budget, limit.setting))} on {len(bad)} frames")
    return problems


def budget_summary(
    plans: VariantPlans, frames: pd.DataFrame, settings: VerificationSettings, frame_count: int | None = None
) -> pd.DataFrame:
    """Per variant: worst per-frame SSIM and mean CIEDE2000 vs baseline, frames over budget, placebo magnitude.

    ``frames_in_video`` (``frame_count``, default the plan's) and ``budget_sampled`` say whether
    the figures cover every frame or a sample."""
    frame_count = plans.frame_count if frame_count is None else int(frame_count)
    rows = []
    matched = _matched_boost(plans)
    for name, plan in plans.plans.items():
        group = frames[frames["variant"] == name]
        if group.empty:
            continue
        over = settings.budget.over(group)
        row = {
            "video_id": plans.video_id,
            "variant": name,
            "kind": plan.spec.kind,
            "frames": int(len(group)),
            "min_ssim": float(group["ssim"].min()),
            "max_delta_e": float(group["delta_e"].max()),
            "mean_delta_e": float(group["delta_e"].mean()),
            "frames_over_budget": int(over.sum()),
            "budget_min_ssim": settings.min_ssim,
            "budget_max_delta_e": settings.max_delta_e,
            "budget_passed": bool(not over.any()),
            **_worst_figures(group),
            "budget_exceeded": "; ".join(_exceeded(group[over], settings.budget)),
            "placebo_magnitude_ratio": float("nan"),
            "matched_boost": None,
            "frames_in_video": frame_count,
            "budget_sampled": bool(group["frame"].nunique() < frame_count),
        }
        if plan.spec.kind == "placebo" and matched is not None:
            boost = frames[frames["variant"] == matched].set_index("frame")
            mine = group.set_index("frame")
            common = mine.index.intersection(boost.index)
            present = mine.loc[common, "product_present"]
            both = common[present.to_numpy()]
            boost_mean = float(boost.loc[both, "delta_e"].mean()) if len(both) else 0.0
            ratio = float(mine.loc[both, "delta_e"].mean()) / boost_mean if boost_mean > 0 else float("nan")
            row["placebo_magnitude_ratio"] = ratio
            row["matched_boost"] = matched
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["video_id"] = table["video_id"].astype("string")
    return table


def _window_limited(limits: Mapping[str, Mapping[str, Any]] | None, variant: str, window: str) -> dict[str, Any] | None:
    """The editor's limit record for a variant's window (``all``: any window), or None when not limited."""
    per_window = (limits or {}).get(variant) or {}
    records = list(per_window.values()) if window == "all" else [per_window.get(window) or {}]
    capped = sum(int(r.get("frames_budget_capped", 0)) for r in records)
    at_max = sum(int(r.get("frames_at_max_strength", 0)) for r in records)
    frames = sum(int(r.get("frames_edited", 0)) for r in records)
    if capped + at_max == 0:
        return None
    return {"frames": frames, "capped": capped, "at_max": at_max}


def verify_variants(
    plans: VariantPlans,
    original_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    masks: np.ndarray,
    calibrating: AttentionFn,
    independent: Mapping[str, AttentionFn],
    thresholds: CheckThresholds = CheckThresholds(),
    settings: VerificationSettings = VerificationSettings(),
    every: int = 1,
    protect: np.ndarray | None = None,
    limits: Mapping[str, Mapping[str, Any]] | None = None,
    frames: Sequence[int] | None = None,
    budget_frames: Sequence[int] | None = None,
    analysis_max_side: int | None = None,
    on_frame: Callable[[int, tuple[np.ndarray, ...]], None] | None = None,
    on_frame_frames: Iterable[int] | None = None,
) -> ManipulationReport:
    """The manipulation check under the calibrating scorer AND a majority of independent scorers.

    A (variant, window) row passes when the calibrating scorer passes it (the rules of
    :func:`manipulation_check`) and more than half of the ``independent`` scorers agree (sign of
    every planned change; no change for placebo, baseline and off-window frames, within
    tolerance). A variant's status is ``passed`` when every row passes, its rendered frames keep
    the perceptual budget against baseline on every frame and (placebo) its magnitude matches the
    matched boost's; ``unreachable`` when the only failures are planned windows the editor had to
    limit (budget-capped or at maximum strength, from ``limits``: the render manifest's
    ``edit_limits``); ``not_manipulable`` when the calibrating check says so for every window (its
    window has no product frames or plans no change); ``failed`` otherwise. ``limits`` None:
    nothing was limited.

    ``frames`` / ``budget_frames`` / ``analysis_max_side`` / ``on_frame(_frames)``: which frames the
    scorers and the budget measure, the scorers' analysis resolution, and who else reads the
    decoded frames (see :func:`measure_rendered`; the
    defaults measure the budget on every frame and score every ``every``-th frame at full
    resolution). A budget measured on a sample says so in the budget table (``budget_sampled``,
    ``frames_in_video``) and in every verdict's reason.
    """
    calibrating_name, scorers = _verification_scorers(plans, calibrating, independent)
    original, achieved, per_frame = measure_rendered(
        original_path,
        variant_paths,
        plans.baseline_name(),
        masks,
        scorers,
        protect,
        every,
        frames,
        budget_frames,
        analysis_max_side,
        on_frame,
        on_frame_frames,
    )
    product_frames = np.array(
        [bool(np.asarray(masks[index]).any()) for index in range(len(masks))]
    )  # one frame at a time
    per_scorer = {
        name: _scorer_check(
            plans, achieved[name], original[name], thresholds, settings, name, name == calibrating_name, product_frames
        )
        for name in scorers
    }
    main = _with_independent_votes(per_scorer[calibrating_name].copy(), [per_scorer[name] for name in independent])
    budget = budget_summary(plans, per_frame, settings, frame_count=len(masks))
    verdicts = _Verdicts(plans, main, budget, thresholds, settings, limits).table()
    if not budget.empty:
        main = main.merge(_budget_columns(budget), on="variant", how="left")
    scorer_table = pd.concat(per_scorer.values(), ignore_index=True)[SCORER_TABLE_COLUMNS]
    return ManipulationReport(main, verdicts, thresholds, calibrating_name, scorer_table, budget)


SCORER_TABLE_COLUMNS = [
    "video_id",
    "variant",
    "kind",
    "window",
    "decides",
    "scorer",
    "scorer_role",
    "frames_measured",
    "target_delta",
    "achieved_delta",
    "achieved_delta_vs_original",
    "share_achieved",
    "agrees",
    "reason",
]


def _verification_scorers(
    plans: VariantPlans, calibrating: AttentionFn, independent: Mapping[str, AttentionFn]
) -> tuple[str, dict[str, AttentionFn]]:
    """The calibrating scorer's name and every scorer by name (at least two independent, none calibrating)."""
    if len(independent) < 2:
        raise ValueError(
            f"video {plans.video_id}: the check needs at least two independent scorers, got {list(independent)}"
        )
    calibrating_name = _fn_name(calibrating)
    if calibrating_name in independent:
        raise ValueError(
            f"video {plans.video_id}: the calibrating scorer {calibrating_name!r} cannot also be independent"
        )
    return calibrating_name, {calibrating_name: calibrating, **independent}


def _scorer_check(
    plans: VariantPlans,
    achieved: Mapping[str, np.ndarray],
    original: np.ndarray,
    thresholds: CheckThresholds,
    settings: VerificationSettings,
    name: str,
    is_calibrating: bool,
    product_frames: np.ndarray,
) -> pd.DataFrame:
    """The check's table under one scorer, with its role and whether it agrees with the plan."""
    report = manipulation_check(plans, achieved, original, thresholds, name, product_frames=product_frames)
    table = report.table.copy()
    table["scorer"] = name
    table["scorer_role"] = "calibrating" if is_calibrating else "independent"
    table["agrees"] = table["passed"] if is_calibrating else scorer_agrees(table, thresholds, settings)
    return table


def _with_independent_votes(main: pd.DataFrame, independent: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The calibrating table with the independent scorers' votes: a row passes with their majority."""
    main["calibrating_status"] = main["status"]
    keys = ["variant", "window"]
    votes = pd.concat([table[keys + ["agrees"]] for table in independent])
    counts = votes.groupby(keys)["agrees"].agg(["sum", "count"]).reset_index()
    main = main.merge(
        counts.rename(columns={"sum": "independent_agree", "count": "independent_total"}), on=keys, how="left"
    )
    main["independent_agree"] = main["independent_agree"].astype(int)
    main["independent_total"] = main["independent_total"].astype(int)
    main["independent_majority"] = main["independent_agree"] * 2 > main["independent_total"]
    main["calibrating_passed"] = main["passed"]
    main["passed"] = main["calibrating_passed"] & main["independent_majority"]
    main["reason"] = [
        _voted_reason(*row)
        for row in zip(
            main["reason"],
            main["calibrating_passed"],
            main["independent_agree"],
            main["independent_total"],
            main["independent_majority"],
            main["calibrating_status"],
            strict=False,
        )
    ]
    main = main.drop(columns=["scorer", "scorer_role", "agrees", "status"])
    main["status"] = np.where(
        main["passed"], "passed", np.where(main["calibrating_status"] == "not_manipulable", "not_manipulable", "failed")
    )
    return main


def _voted_reason(rule: str, calibrating: bool, agree: int, total: int, majority: bool, status: str) -> str:
    """A row's reason under both votes, the deciding one first, with no word that contradicts the status."""
    if status == "not_manipulable":
        return rule
    votes = f"independent scorers agree {agree}/{total}" + ("" if majority else " (no majority)")
    if calibrating and majority:
        return f"{rule}; {votes}"
    if calibrating:
        return f"{votes}; calibrating scorer: {rule}"
    return f"calibrating scorer: {rule}; {votes}"


def _budget_columns(budget: pd.DataFrame) -> pd.DataFrame:
    """The budget figures every row of a variant carries in the check's table."""
    columns = ["variant", "min_ssim", "max_delta_e", "budget_passed", "placebo_magnitude_ratio", "frames"]
    return budget[[*columns, "budget_sampled"]].rename(
        columns={"min_ssim": "budget_min_ssim", "max_delta_e": "budget_max_delta_e", "frames": "budget_frames"}
    )


class _Verdicts:
    """One verdict per variant from the voted table and the budget; marks unreachable rows of ``main`` in place."""

    def __init__(
        self,
        plans: VariantPlans,
        main: pd.DataFrame,
        budget: pd.DataFrame,
        thresholds: CheckThresholds,
        settings: VerificationSettings,
        limits: Mapping[str, Mapping[str, Any]] | None,
    ) -> None:
        self.plans, self.main, self.thresholds, self.settings, self.limits = plans, main, thresholds, settings, limits
        self.budget_by_variant = budget.set_index("variant") if not budget.empty else pd.DataFrame()

    def table(self) -> pd.DataFrame:
        deciding = self.main["decides"].astype(bool)
        averaged = self.main.index[~deciding]
        self.main.loc[averaged, "reason"] = [
            f"{reason} ({NOT_DECIDING})" for reason in self.main.loc[averaged, "reason"]
        ]
        verdicts = [self._verdict(name, group) for name, group in self.main[deciding].groupby("variant", sort=False)]
        verdict_table = pd.DataFrame(verdicts)
        verdict_table["video_id"] = verdict_table["video_id"].astype("string")
        return verdict_table

    def _verdict(self, name: str, group: pd.DataFrame) -> dict[str, Any]:
        if (group["status"] == "not_manipulable").all():
            return self._row(name, "not_manipulable", str(group["reason"].iloc[0]))
        problems = self._budget_problems(name)
        failing = group[~group["passed"]]
        unreachable_rows = [index for index, row in failing.iterrows() if self._mark_unreachable(name, index, row)]
        others = failing.drop(index=unreachable_rows)
        if problems or not others.empty:
            status = "failed"
        elif unreachable_rows:
            status = "unreachable"
        else:
            status = "passed"
        if status == "passed":
            reason = "all windows passed under the calibrating scorer and the independent majority; budget kept"
            return self._row(name, status, reason + _budget_scope(self.budget_by_variant, name))
        main = self.main
        reasons = problems + [
            f"{w} window: {r}"
            for w, r in zip(main.loc[failing.index, "window"], main.loc[failing.index, "reason"], strict=False)
        ]
        return self._row(name, status, "; ".join(reasons))

    def _row(self, name: str, status: str, reason: str) -> dict[str, Any]:
        return {
            "video_id": self.plans.video_id,
            "variant": name,
            "passed": status == "passed",
            "status": status,
            "reason": reason,
        }

    def _budget_problems(self, name: str) -> list[str]:
        """Why the variant's rendered frames fail the budget or (placebo) the matched magnitude."""
        if name not in self.budget_by_variant.index:
            return []
        settings, problems = self.settings, []
        figures = self.budget_by_variant.loc[name]
        if not bool(figures["budget_passed"]):
            problems.append(
                f"perceptual budget exceeded on {int(figures['frames_over_budget'])}/{int(figures['frames'])} "
                f"{'sampled frames' if figures['budget_sampled'] else 'frames'}: {figures['budget_exceeded']}"
            )
        ratio = figures["placebo_magnitude_ratio"]
        low, high = settings.placebo_magnitude_range
        if self.plans[name].spec.kind == "placebo" and not (np.isfinite(ratio) and low <= ratio <= high):
            problems.append(
                f"placebo magnitude {ratio:.2f}x the matched boost's mean CIEDE2000 (need {low:g}-{high:g}x)"
            )
        return problems

    def _mark_unreachable(self, name: str, index: Any, row: pd.Series) -> bool:
        """Mark a failing planned row unreachable when the editor was limited in its window and the
        calibrating scorer failed it; True when marked."""
        limited = _window_limited(self.limits, name, row["window"])
        planned = abs(row["target_delta"]) > self.thresholds.eps
        if not (planned and limited and not row["calibrating_passed"]):
            return False
        thresholds = self.thresholds
        self.main.loc[index, "status"] = "unreachable"
        self.main.loc[index, "reason"] = (
            f"UNREACHABLE within the budget: achieved {row['share_achieved']:.0%} of the planned change "
            f"(need {thresholds.min_share:.0%}); the editor was limited on {limited['capped']} budget-capped and "
            f"{limited['at_max']} max-strength of {limited['frames']} edited frames; "
            f"independent scorers agree {row['independent_agree']}/{row['independent_total']}"
        )
        return True
