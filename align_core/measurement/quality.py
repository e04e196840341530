"""Variant quality: temporal consistency, fidelity where a variant must not change, LPIPS.

Definitions (all on RGB uint8 frames, values on the 0-255 scale):

- Warping error: for consecutive frames t, t+1 of the same scene (never across a cut), flow
  ``F_{t->t+1}`` is computed once on the ORIGINAL video (OpenCV DIS on grayscale) with a
  forward-backward occlusion check; for a video X the error is the mean over trusted pixels and
  channels of ``|X_{t+1}(x + F(x)) - X_t(x)|``, averaged over pairs. It is reported for the
  edited video, for the original, and their difference: an edit that flickers or swims raises
  the edited error above the original's own.
- PSNR / SSIM against the original: on the whole frame, on the pixels the variant was NOT
  allowed to change (``protected``; empty, hence NaN, for variants allowed everywhere), inside
  the product mask and outside it. SSIM is the standard Gaussian-window SSIM (Wang et al. 2004:
  11x11 window, sigma 1.5, K1 0.01, K2 0.03, L 255) on BT.601 luma, averaged over the region.
- LPIPS: through an optional ``lpips_fn(original, edited) -> float`` on every ``lpips_every``-th
  measured frame, with ``lpips_backbone_state`` recorded beside it (e.g. whether the AlexNet
  backbone had its pretrained weights), so a number from an untrained backbone is never passed
  off as LPIPS.

Real size (``frames``, ``analysis_max_side``; the stage passes both, defaults keep the above on
every frame at full resolution). Every metric is computed at the *analysis resolution* of
:mod:`align_core.measurement.frame_sampling`: original and variant frames are block-averaged by the integer
factor ``f = ceil(max(H, W) / analysis_max_side)`` (1080x1920 at 512: ``f = 4``, 270x480; a frame
already that small: ``f = 1``, exactly the full-resolution numbers). Flow for the warping error
is computed on the averaged original. Regions become blocks: a block belongs to the protected,
product or background region when every one of its ``f x f`` pixels does (so straddling blocks
count for neither side); ``protected_share`` is counted on full-resolution pixels. Only the
``frames`` sample is measured (the rule: every k-th frame of each scene-window segment plus its
first and last; the warping error of a measured frame ``t`` pairs it with ``t - 1`` when both are
in one scene). Each row records ``frames_measured``, ``warp_pairs``, ``sample_rule``,
``analysis_factor`` and the analysis size. Protected-pixel fidelity at full resolution is the
stimulus check's (:mod:`align_core.measurement.stimulus_checks`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from align_core.io.video_io import even_size, lockstep_frames, probe_video
from align_core.measurement.frame_sampling import analysis_factor, downscale, downscale_mask, full_blocks
from align_core.measurement.image_metrics import SsimReference, psnr, ssim_map
from align_core.stimuli.editing.propagation import FlowPropagator
from align_core.stimuli.editing.regions import allowed_region
from align_core.stimuli.plans import VariantPlans

__all__ = [
    "QualityPass",
    "evaluate_variants",
    "psnr",
    "sequence_warping_error",
    "ssim",
    "ssim_map",
]

LpipsFn = Callable[[np.ndarray, np.ndarray], float]


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean SSIM over ``region`` (bool (H, W); whole image when None); NaN for an empty region."""
    values = ssim_map(a, b)
    if region is None:
        return float(values.mean())
    region = np.asarray(region, dtype=bool)
    return float(values[region].mean()) if region.any() else float("nan")


@dataclass
class VariantQuality:
    video_id: str
    variant: str
    kind: str
    frames: int
    warping_error_edited: float
    warping_error_original: float
    warping_error_delta: float
    psnr_full: float
    ssim_full: float
    psnr_protected: float
    ssim_protected: float
    protected_share: float
    psnr_product: float
    psnr_background: float
    lpips: float | None
    lpips_frames: int
    lpips_backbone_state: str | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class _Accumulator:
    """Running means of per-frame metrics for one variant (finite values only for PSNR)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: float) -> None:
        if np.isnan(value):
            return
        if np.isinf(value):
            value = 100.0  # identical pixels: cap PSNR at 100 dB so means stay finite
        self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.counts[name] = self.counts.get(name, 0) + 1

    def mean(self, name: str) -> float:
        return self.sums[name] / self.counts[name] if self.counts.get(name) else float("nan")


def warp_error(
    frame_t: np.ndarray, frame_next: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, valid: np.ndarray
) -> float:
    """Mean |frame_next warped to t - frame_t| over trusted pixels (0-255 scale)."""
    warped = cv2.remap(frame_next.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = np.abs(warped - frame_t.astype(np.float32)).mean(axis=-1)
    return float(diff[valid > 0].mean()) if (valid > 0).any() else float("nan")


def evaluate_variants(
    original_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    plans: VariantPlans,
    masks: np.ndarray,
    placebo_margin: float = 0.02,
    lpips_fn: LpipsFn | None = None,
    lpips_backbone_state: str | None = None,
    lpips_every: int = 10,
    propagator: FlowPropagator | None = None,
    analysis_max_side: int | None = None,
    frames: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row of :class:`VariantQuality` per variant; every video is decoded once, in lockstep.

    ``frames``: the frames measured (default every frame; the stage passes a
    :func:`align_core.measurement.frame_sampling.sample_frames` sample); the warping error of a measured frame
    ``t`` uses the pair ``(t - 1, t)`` when both are in one scene. ``analysis_max_side``: metrics
    run at the analysis resolution of :mod:`align_core.measurement.frame_sampling` (None: full resolution).
    Flow is computed once per frame pair on the original and shared by every variant. The masks
    are read one frame at a time (a lazy mask store is never expanded). :class:`QualityPass` is the
    same measurement fed by someone else's decode (the manipulation check's, so one decode serves both).
    """
    quality = QualityPass(
        original_path,
        variant_paths,
        plans,
        masks,
        placebo_margin,
        lpips_fn,
        lpips_backbone_state,
        lpips_every,
        propagator,
        analysis_max_side,
        frames,
    )
    paths = [original_path, *(variant_paths[n] for n in quality.names)]
    for index, current in enumerate(lockstep_frames(paths, (quality.probe.height, quality.probe.width))):
        quality.add(index, current)
    return quality.table()


class QualityPass:
    """The measurements of :func:`evaluate_variants`, fed one lockstep frame tuple at a time.

    ``add(index, (original, *variants))`` for every frame in order (variants in ``variant_paths``
    order, at the original's size); ``table()`` at the end.
    """

    def __init__(
        self,
        original_path: str | os.PathLike[str],
        variant_paths: Mapping[str, str | os.PathLike[str]],
        plans: VariantPlans,
        masks: np.ndarray,
        placebo_margin: float = 0.02,
        lpips_fn: LpipsFn | None = None,
        lpips_backbone_state: str | None = None,
        lpips_every: int = 10,
        propagator: FlowPropagator | None = None,
        analysis_max_side: int | None = None,
        frames: Sequence[int] | None = None,
    ) -> None:
        self.original_path = Path(original_path)
        self.probe = probe = probe_video(self.original_path)
        count = probe.frame_count
        if lpips_fn is not None and not lpips_backbone_state:
            raise ValueError(
                "lpips_fn given without lpips_backbone_state: say which backbone weights produced the numbers"
            )
        self.names = names = list(variant_paths)
        for name in names:
            if name not in plans.plans:
                raise KeyError(f"video {plans.video_id}: variant {name!r} has a file but no plan")
            other = probe_video(variant_paths[name])
            # An odd-size original is rendered padded to even by one edge row/column; it is compared
            # cropped back to the original's size (like with like).
            sizes = {(probe.height, probe.width), even_size(probe.height, probe.width)}
            if other.frame_count != count or (other.height, other.width) not in sizes:
                raise ValueError(
                    f"variant {name} ({variant_paths[name]}): {other.frame_count} frames {other.width}x{other.height}, "
                    f"original {self.original_path} has {count} frames {probe.width}x{probe.height}"
                )
        self.plans, self.masks, self.count = plans, masks, count
        self.measured = measured = sorted({int(i) for i in (range(count) if frames is None else frames)})
        if measured and not 0 <= measured[0] <= measured[-1] < count:
            raise ValueError(f"video {plans.video_id}: measured frames must lie in 0..{count - 1}")
        self.measured_set = set(measured)
        self.scene_start = {int(s) for s, _ in plans.scene_ranges}
        self.needed = self.measured_set | {t - 1 for t in measured if t > 0 and t not in self.scene_start}
        self.lpips_at = set(measured[:: max(1, int(lpips_every))])
        self.lpips_fn, self.lpips_backbone_state = lpips_fn, lpips_backbone_state
        self.factor = analysis_factor(probe.height, probe.width, analysis_max_side)
        self.propagator = propagator or FlowPropagator()
        self.margin_px = int(round(placebo_margin * min(probe.height, probe.width)))
        self.acc = {name: _Accumulator() for name in ["original", *names]}
        self.kinds = {name: plans[name].spec.kind for name in names}
        self.previous: tuple[int, list[np.ndarray]] | None = None
        self.protected_pixels = {n: 0 for n in names}
        self.decoded = 0

    def add(self, index: int, current: Sequence[np.ndarray]) -> None:
        """Frame ``index`` of the original and of every variant (in order; every frame of the video)."""
        self.decoded += 1
        if index not in self.needed:
            return
        small = [downscale(frame, self.factor) for frame in current]
        if index in self.measured_set:
            _measure_frame(
                index,
                small,
                self.previous,
                self.masks,
                self.kinds,
                self.names,
                self.factor,
                self.margin_px,
                self.scene_start,
                self.propagator,
                self.acc,
                self.protected_pixels,
                self.lpips_fn if index in self.lpips_at else None,
            )
        self.previous = (index, small)

    def table(self) -> pd.DataFrame:
        if self.decoded == 0:
            raise ValueError(f"video {self.original_path}: no frames decoded")
        probe, count, factor, measured = self.probe, self.count, self.factor, self.measured
        rows = []
        original_warp = self.acc["original"].mean("warp")
        lpips_fn = self.lpips_fn
        for name in self.names:
            a = self.acc[name]
            row = VariantQuality(
                video_id=self.plans.video_id,
                variant=name,
                kind=self.kinds[name],
                frames=count,
                warping_error_edited=a.mean("warp"),
                warping_error_original=original_warp,
                warping_error_delta=a.mean("warp") - original_warp,
                psnr_full=a.mean("psnr_full"),
                ssim_full=a.mean("ssim_full"),
                psnr_protected=a.mean("psnr_protected"),
                ssim_protected=a.mean("ssim_protected"),
                protected_share=self.protected_pixels[name] / float(max(1, len(measured)) * probe.height * probe.width),
                psnr_product=a.mean("psnr_product"),
                psnr_background=a.mean("psnr_background"),
                lpips=a.mean("lpips") if lpips_fn is not None else None,
                lpips_frames=a.counts.get("lpips", 0),
                lpips_backbone_state=self.lpips_backbone_state if lpips_fn is not None else None,
            ).to_dict()
            row.update(
                frames_measured=len(measured),
                warp_pairs=a.counts.get("warp", 0),
                sample_rule=_sample_rule(measured, count),
                analysis_factor=factor,
                analysis_height=probe.height // factor,
                analysis_width=probe.width // factor,
            )
            rows.append(row)
        table = pd.DataFrame(rows)
        table["video_id"] = table["video_id"].astype("string")
        return table


def _sample_rule(measured: Sequence[int], count: int) -> str:
    if len(measured) == count:
        return f"every frame ({count})"
    return f"{len(measured)} of {count} frames (align_core.measurement.frame_sampling rule: every k-th of each scene-window segment plus its first and last)"


def _measure_frame(
    index: int,
    small: list[np.ndarray],
    previous: tuple[int, list[np.ndarray]] | None,
    masks,
    kinds: Mapping[str, str],
    names: list[str],
    factor: int,
    margin_px: int,
    scene_start: set[int],
    propagator: FlowPropagator,
    acc: dict[str, _Accumulator],
    protected_pixels: dict[str, int],
    lpips_fn: LpipsFn | None,
) -> None:
    """Every metric of one measured frame, for every variant, at the analysis resolution."""
    mask = np.asarray(masks[index], dtype=bool)
    original = small[0]
    if previous is not None and previous[0] == index - 1 and index not in scene_start:
        before = previous[1]
        forward = propagator.flow(before[0], original)
        backward = propagator.flow(original, before[0])
        valid = propagator.consistent(forward, backward)
        ys, xs = np.mgrid[0 : original.shape[0], 0 : original.shape[1]].astype(np.float32)
        map_x, map_y = xs + forward[..., 0], ys + forward[..., 1]
        acc["original"].add("warp", warp_error(before[0], original, map_x, map_y, valid))
        for i, name in enumerate(names, start=1):
            acc[name].add("warp", warp_error(before[i], small[i], map_x, map_y, valid))
    coverage = downscale_mask(mask, factor)
    product = full_blocks(coverage)
    background = full_blocks(downscale_mask(~mask, factor))
    reference = SsimReference(original)
    protected_by_kind: dict[str, tuple[np.ndarray, int]] = {}
    for i, name in enumerate(names, start=1):
        kind = kinds[name]
        if kind not in protected_by_kind:
            protected_full = ~allowed_region(kind, mask, margin_px)
            protected_by_kind[kind] = (full_blocks(downscale_mask(protected_full, factor)), int(protected_full.sum()))
        protected, protected_count = protected_by_kind[kind]
        protected_pixels[name] += protected_count
        edited = small[i]
        values = reference.map(edited)
        a = acc[name]
        a.add("psnr_full", psnr(original, edited))
        a.add("ssim_full", float(values.mean()))
        a.add("psnr_protected", psnr(original, edited, protected))
        a.add("ssim_protected", float(values[protected].mean()) if protected.any() else float("nan"))
        a.add("psnr_product", psnr(original, edited, product))
        a.add("psnr_background", psnr(original, edited, background))
        if lpips_fn is not None:
            a.add("lpips", float(lpips_fn(original, edited)))


def sequence_warping_error(
    frames: Sequence[np.ndarray],
    reference: Sequence[np.ndarray] | None = None,
    propagator: FlowPropagator | None = None,
) -> float:
    """Warping error of ``frames`` with flow from ``reference`` (default: the frames themselves); one scene."""
    propagator = propagator or FlowPropagator()
    reference = frames if reference is None else reference
    errors = []
    for t in range(len(frames) - 1):
        forward = propagator.flow(reference[t], reference[t + 1])
        backward = propagator.flow(reference[t + 1], reference[t])
        valid = propagator.consistent(forward, backward)
        ys, xs = np.mgrid[0 : frames[t].shape[0], 0 : frames[t].shape[1]].astype(np.float32)
        errors.append(warp_error(frames[t], frames[t + 1], xs + forward[..., 0], ys + forward[..., 1], valid))
    return float(np.nanmean(errors)) if errors else float("nan")
