"""The manipulation check: did each variant move the product's share of attention as planned?

The same attention function and the same masks are run on the original and on every variant's
decoded frames; achieved alignment ``a_t = sum(A_t M_t) / sum(A_t)`` is averaged per window
(early / middle / late thirds by centre time, and ``all``) and compared with the plan.

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

import numpy as np
import pandas as pd

from align_core.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.editing.render import StrengthMap
from align_core.variants import TIME_WINDOWS, VariantPlans
from align_core.video_io import iter_frames

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

    @property
    def passed(self) -> bool:
        return bool(self.verdicts["passed"].all())

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
        raise KeyError(f"video {plans.video_id}: the manipulation check needs the baseline variant {baseline!r} measured")
    count = plans.frame_count
    windows = np.asarray(plans.frame_windows)
    original_achieved = np.asarray(original_achieved, dtype=np.float64)
    if original_achieved.shape != (count,):
        raise ValueError(f"video {plans.video_id}: original alignment has shape {original_achieved.shape}, expected ({count},)")
    base_curve = np.asarray(achieved[baseline], dtype=np.float64)
    rows = []
    for name, curve in achieved.items():
        plan = plans[name]
        not_manipulable = _not_manipulable(plan, plans, windows, product_frames, thresholds.eps)
        curve = np.asarray(curve, dtype=np.float64)
        if curve.shape != (count,):
            raise ValueError(f"video {plans.video_id}: variant {name} alignment has shape {curve.shape}, expected ({count},)")
        for window in (*TIME_WINDOWS, "all"):
            in_window = np.ones(count, bool) if window == "all" else windows == window
            measured = in_window & np.isfinite(curve) & np.isfinite(original_achieved) & np.isfinite(base_curve)
            if not measured.any():
                continue
            original = float(original_achieved[measured].mean())
            base = float(base_curve[measured].mean())
            value = float(curve[measured].mean())
            target = float(plan.frame_target[measured].mean())
            target_delta = float((plan.frame_target[measured] - plans.original_alignment[measured]).mean())
            delta_base = value - base
            delta_original = value - original
            share = delta_base / target_delta if abs(target_delta) > thresholds.eps else float("nan")
            share_original = delta_original / target_delta if abs(target_delta) > thresholds.eps else float("nan")
            kind = plan.spec.kind
            if not_manipulable:
                passed = False
                reason = not_manipulable
            elif abs(target_delta) > thresholds.eps:
                passed = share >= thresholds.min_share
                if thresholds.require_vs_original:
                    passed = passed and share_original >= thresholds.min_share
                reason = (
                    f"achieved {share:.0%} of the planned change vs baseline ({share_original:.0%} vs original); "
                    f"need >= {thresholds.min_share:.0%} with the planned sign"
                )
            elif kind == "identity":
                passed = abs(delta_original) <= thresholds.tolerance
                reason = f"|change vs original| = {abs(delta_original):.3f} (tolerance {thresholds.tolerance})"
            elif kind == "placebo":
                passed = abs(delta_base) <= thresholds.tolerance
                if thresholds.require_vs_original:
                    passed = passed and abs(delta_original) <= thresholds.tolerance
                reason = (
                    f"|change vs baseline| = {abs(delta_base):.3f}, vs original = {abs(delta_original):.3f} "
                    f"(tolerance {thresholds.tolerance})"
                )
            else:
                passed = abs(delta_base) <= thresholds.off_window_tolerance
                reason = f"outside its window: |change vs baseline| = {abs(delta_base):.3f} (tolerance {thresholds.off_window_tolerance})"
            rows.append(
                {
                    "video_id": plans.video_id,
                    "variant": name,
                    "kind": kind,
                    "window": window,
                    "frames_measured": int(measured.sum()),
                    "original_alignment": original,
                    "planned_original_alignment": float(plans.original_alignment[measured].mean()),
                    "baseline_alignment": base,
                    "target_alignment": target,
                    "achieved_alignment": value,
                    "target_delta": target_delta,
                    "achieved_delta": delta_base,
                    "achieved_delta_vs_original": delta_original,
                    "share_achieved": share,
                    "share_achieved_vs_original": share_original,
                    "passed": bool(passed),
                    "status": "not_manipulable" if not_manipulable else ("passed" if passed else "failed"),
                    "reason": reason if not_manipulable else ("ok: " if passed else "FAILED: ") + reason,
                }
            )
    table = pd.DataFrame(rows)
    table["video_id"] = table["video_id"].astype("string")
    verdicts = []
    for name, group in table.groupby("variant", sort=False):
        failing = group[~group["passed"]]
        status = "passed" if failing.empty else ("not_manipulable" if (group["status"] == "not_manipulable").all() else "failed")
        verdicts.append(
            {
                "video_id": plans.video_id,
                "variant": name,
                "passed": failing.empty,
                "status": status,
                "reason": "all windows passed" if failing.empty
                else group["reason"].iloc[0] if status == "not_manipulable"
                else "; ".join(f"{w}: {r}" for w, r in zip(failing["window"], failing["reason"])),
            }
        )
    verdict_table = pd.DataFrame(verdicts)
    verdict_table["video_id"] = verdict_table["video_id"].astype("string")
    return ManipulationReport(table, verdict_table, thresholds, attention_fn_name)


def _not_manipulable(plan, plans: VariantPlans, windows: np.ndarray, product_frames: np.ndarray, eps: float) -> str | None:
    """Why a boost/reduction cannot differ from baseline (None when it can): its window plans no change."""
    spec = plan.spec
    if spec.kind not in ("boost", "reduce"):
        return None
    own = np.ones(len(windows), bool) if spec.window == "full" else windows == spec.window
    planned = np.abs(np.asarray(plan.frame_target, dtype=np.float64)[own] - np.asarray(plans.original_alignment, dtype=np.float64)[own])
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
    product_frames = np.asarray(masks).reshape(len(masks), -1).any(axis=1)
    return manipulation_check(plans, achieved, original, thresholds, _fn_name(attention_fn), product_frames=product_frames)


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
    strengths: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
    min_alignment: float = 1e-3,
) -> tuple[StrengthMap, list[CalibrationPoint]]:
    """Measure ``log(a'/a)`` at a few strengths on sample keyframes; return the inverse mapping.

    One-shot and per video: edit each sample frame (boost and reduce) at each strength, score it
    with ``attention_fn``, and record ``log(sum a' / sum a)`` over frames whose product is present
    (``mean_log_ratio``: the log ratio of the MEAN alignment, which is what the check compares). The renderer then picks, per keyframe, the strength whose measured effect reaches
    the target (strength 1 where even full strength falls short).
    """
    usable = []
    for frame, mask in zip(frames, masks):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        attention = np.asarray(attention_fn(frame), dtype=np.float32)
        base = alignment(attention, mask)
        if base >= min_alignment:
            usable.append((frame, mask, base, attention))
    if not usable:
        raise ValueError("calibration needs at least one frame with a visible product and non-zero alignment")
    points: list[CalibrationPoint] = []
    tables: dict[str, list[float]] = {"boost": [0.0], "reduce": [0.0]}
    for kind in ("boost", "reduce"):
        for strength in sorted(strengths):
            edited_alignment = []
            for frame, mask, base, attention in usable:
                request = KeyframeEditRequest(
                    frame=frame, mask=mask, attention=attention,
                    target_control=np.stack([mask.astype(np.float32), attention * mask]),
                    original_alignment=base, target_alignment=base, allowed=np.ones(mask.shape, bool),
                    kind=kind, strength=float(strength), seed=seed,  # type: ignore[arg-type]
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

