"""Product masks from one box (or a few clicks, or a mask PNG) per scene, without model weights.

At every annotated frame the product is segmented with GrabCut (OpenCV) seeded by the box, at
the BOX's scale: a crop around the box (plus ``context`` of its size for background samples) is
resized so its longer side is ``grabcut_max_side`` and segmented (5 iterations, colour GMMs
learnt there), then the boundary is re-decided at full resolution in the crop with the same
colour models frozen (``GC_EVAL_FREEZE_MODEL``, a band around the coarse edge). Positive and
negative clicks become hard foreground/background disks. So a product box costs the same at
288x512 and 1080x1920.

A box with no product in it gives an EMPTY mask, not a forced one: when GrabCut keeps under
``min_fg_share`` of the box, or the pixels it keeps look like the ring of background around the
box (Bhattacharyya coefficient of their colour histograms above ``max_ring_similarity``), the
frame's mask is left empty and the reason is recorded. Positive clicks or a mask PNG overrule
that test (the annotator said the product is there).

Between annotated frames the masks are CARRIED by the DIS optical flow the editing propagation
uses (:class:`align_core.stimuli.editing.propagation.FlowPropagator`) at a working size (longer side
``work_max_side``), frame to frame, in both directions: forward from the previous annotated
frame with the backward flow ``F_{t->t-1}`` (backward mapping: ``m_t(x) = m_{t-1}(x + F)``)
and backward from the next annotated frame with ``F_{t->t+1}``. Each link is checked forward-
backward (the propagation's Sundaram test); a pixel whose source is outside the frame carries
nothing (products leave and enter the frame), and a pixel that fails the check halves its
confidence in that direction. Between two annotated frames each direction is weighted by
temporal closeness times confidence. Nothing is ever carried across a scene cut: each scene
starts from its own annotations, and a scene without any annotation has empty masks (listed).

Per frame it records the mask area against the annotated frame's, the forward-backward error
on the mask, the share of mask pixels no direction trusts, how much the masked pixels look like
the annotated product versus its surroundings, and, on annotated frames, the IoU of the mask's
bounding box with the box; :func:`check_annotated_masks` turns these into pass/fail with the
failing frame numbers.

Memory: one scene's frames at the working size (RGB, about 0.44 MB per frame at 288x512), the carried masks at the working size (uint8), and the annotated frames'
full-size masks; never the full-size video.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from align_core.inputs.annotations import (
    AnnotationTable,
    FrameAnnotation,
    annotation_masks_dir,
    annotations_digest,
    annotations_path,
    read_annotations,
    resolve_annotations,
)
from align_core.io.atomic import atomic_path
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoProbe, iter_frames
from align_core.perception.reacquire import ProductSearch, absent_ranges
from align_core.stimuli.editing.propagation import FlowPropagator

__all__ = [
    "AnnotatedSegmenter",
    "AnnotatedSettings",
    "CHECK_DESCRIPTIONS",
    "ClipSegWithAnnotations",
    "WARN_CHECKS",
    "check_annotated_masks",
    "save_mask_diagnostics",
    "segment_annotated_frame",
]

_LEVELS = 6  # colour quantisation per channel for appearance histograms (6^3 = 216 bins)
_BINS = _LEVELS**3


@dataclass(frozen=True)
class AnnotatedSettings:
    """Knobs of the annotated segmenter and its checks (recorded in the lineage)."""

    work_max_side: int = 512
    grabcut_max_side: int = 320
    grabcut_iterations: int = 5
    context: float = 0.5
    click_radius: float = 0.04
    min_fg_share: float = 0.03
    max_ring_similarity: float = 0.8
    fb_alpha: float = 0.01
    fb_beta: float = 0.5
    untrusted_decay: float = 0.5
    refine_band: float = 0.08
    refine_grow: int = 2
    max_photometric_error: float = 40.0
    refine_mode: str = "frozen"
    # checks. The flow limits were set on the 3-ad demo corpus (seed 7) with one box per scene:
    # on frames whose IoU with the truth was >= 0.8 the mean forward-backward error on the mask
    # had median 0.4 px, p90 1.5, p99 11 (textureless products), and the share of mask pixels
    # failing the check on the link into the frame median 0.06, p90 0.34, p99 0.63; the frames
    # below 0.8 had 1.0 and 0.9 (the third, an emptied mask, fails the area band instead).
    area_band: tuple[float, float] = (0.5, 2.0)
    max_fb_error: float = 15.0
    max_untrusted_share: float = 0.75
    min_box_iou: float = 0.5
    min_appearance_pixels: int = 24
    # re-acquisition (:mod:`align_core.perception.reacquire`): a carry holding under ``lost_share``
    # of its annotated frame's area has lost the product; then every ``search_every``-th frame is
    # searched at ``search_max_side`` for a template match of at least ``min_match_score``.
    reacquire: bool = True
    lost_share: float = 0.25
    search_every: int = 5
    search_max_side: int = 256
    min_match_score: float = 0.75
    absent_thumbnails: int = 3  # per run of frames where the product was not re-found


# -- colour features -----------------------------------------------------------------------------
def colour_index(rgb: np.ndarray) -> np.ndarray:
    """216-colour index (uint8) of every pixel: 6 levels per channel."""
    q = (rgb.astype(np.uint16) * _LEVELS) >> 8
    return (q[..., 0] * _LEVELS * _LEVELS + q[..., 1] * _LEVELS + q[..., 2]).astype(np.uint8)


def _histogram(index: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    values = index[where]
    if values.size == 0:
        return None
    hist = np.bincount(values.ravel(), minlength=_BINS).astype(np.float64)
    return hist / hist.sum()


def bhattacharyya(p: np.ndarray | None, q: np.ndarray | None) -> float:
    """Overlap of two normalised histograms in [0, 1] (1 = identical)."""
    if p is None or q is None:
        return float("nan")
    return float(np.sqrt(p * q).sum())


# -- segmentation of one annotated frame ---------------------------------------------------------
@dataclass
class Seed:
    """The segmented product at one annotated frame (full size) and its colour models."""

    frame: int
    mask: np.ndarray  # bool (H, W)
    fg_hist: np.ndarray | None
    ring_hist: np.ndarray | None
    boxes: list[tuple[int, int, int, int]]
    box_iou: float | None  # min over boxes that held a product; None without boxes
    empty_boxes: list[str] = field(default_factory=list)  # why a box gave no product
    source: str = "box"  # box | clicks | mask_png | absent


#: GrabCut starts its colour models with k-means, which draws from OpenCV's per-thread random
#: generator. Unseeded, a video's masks depended on what had run before in the same process (a
#: video worker that segmented other videos first gave the real fruit clip different masks).
GRABCUT_SEED = 20131


def grabcut(
    image: np.ndarray, labels: np.ndarray, bgd: np.ndarray, fgd: np.ndarray, iterations: int, mode: int
) -> None:
    """``cv2.grabCut`` with the random generator seeded first, so the same input always gives the same labels."""
    if mode != cv2.GC_EVAL_FREEZE_MODEL:
        cv2.setRNGSeed(GRABCUT_SEED)
    cv2.grabCut(image, labels, None, bgd, fgd, iterations, mode)


def _disk(mask: np.ndarray, x: float, y: float, radius: int, value: int) -> None:
    cv2.circle(mask, (int(round(x)), int(round(y))), max(1, radius), int(value), -1)


def _keep_large_components(
    mask: np.ndarray, keep_points: Sequence[tuple[int, int]] = (), share: float = 0.05
) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = {i + 1 for i, a in enumerate(areas) if a >= share * areas.max()}
    keep |= {int(labels[y, x]) for x, y in keep_points if labels[y, x] > 0}
    return np.isin(labels, sorted(keep))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def box_iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    if a is None or b is None:
        return 0.0
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _grabcut_box(
    frame: np.ndarray,
    box: tuple[int, int, int, int],
    positives: Sequence[tuple[int, int]],
    negatives: Sequence[tuple[int, int]],
    settings: AnnotatedSettings,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """GrabCut in a crop around ``box`` at the box's scale; returns (crop mask, crop colour index, crop rect)."""
    height, width = frame.shape[:2]
    x, y, w, h = box
    margin = int(np.ceil(settings.context * max(w, h))) + 2
    cx0, cy0 = max(0, x - margin), max(0, y - margin)
    cx1, cy1 = min(width, x + w + margin), min(height, y + h + margin)
    crop = np.ascontiguousarray(frame[cy0:cy1, cx0:cx1, ::-1])  # BGR, as OpenCV expects
    crop_h, crop_w = crop.shape[:2]
    scale = min(1.0, settings.grabcut_max_side / max(crop_h, crop_w))
    radius = max(2, int(round(settings.click_radius * max(w, h))))

    def labels(size_w: int, size_h: int, s: float) -> np.ndarray:
        mask = np.full((size_h, size_w), cv2.GC_BGD, np.uint8)
        bx0, by0 = int(round((x - cx0) * s)), int(round((y - cy0) * s))
        bx1, by1 = int(round((x + w - cx0) * s)), int(round((y + h - cy0) * s))
        mask[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        if (mask == cv2.GC_BGD).sum() < 16:  # box fills the frame: the crop border is background
            mask[:2, :] = mask[-2:, :] = cv2.GC_BGD
            mask[:, :2] = mask[:, -2:] = cv2.GC_BGD
        for px, py in positives:
            if cx0 <= px < cx1 and cy0 <= py < cy1:
                _disk(mask, (px - cx0) * s, (py - cy0) * s, int(radius * s), cv2.GC_FGD)
        for px, py in negatives:
            if cx0 <= px < cx1 and cy0 <= py < cy1:
                _disk(mask, (px - cx0) * s, (py - cy0) * s, int(radius * s), cv2.GC_BGD)
        return mask

    small_w, small_h = max(8, int(round(crop_w * scale))), max(8, int(round(crop_h * scale)))
    small = cv2.resize(crop, (small_w, small_h), interpolation=cv2.INTER_AREA) if scale < 1.0 else crop
    coarse = labels(small_w, small_h, small_w / crop_w)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    if (coarse == cv2.GC_PR_FGD).any() or (coarse == cv2.GC_FGD).any():
        grabcut(small, coarse, bgd, fgd, settings.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    fg_small = (coarse == cv2.GC_FGD) | (coarse == cv2.GC_PR_FGD)
    if scale < 1.0 and fg_small.any():
        # Refine the edge at full resolution: a band around the coarse boundary is re-decided with
        # the coarse colour models frozen; outside the band the coarse answer stands.
        up = cv2.resize(fg_small.astype(np.float32), (crop_w, crop_h), interpolation=cv2.INTER_LINEAR) > 0.5
        band_r = int(np.ceil(1.5 / scale)) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_r + 1, 2 * band_r + 1))
        inner = cv2.erode(up.astype(np.uint8), kernel) > 0
        outer = cv2.dilate(up.astype(np.uint8), kernel) > 0
        hard = labels(crop_w, crop_h, 1.0)
        fine = np.where(inner, cv2.GC_FGD, np.where(outer, np.where(up, cv2.GC_PR_FGD, cv2.GC_PR_BGD), cv2.GC_BGD))
        fine = np.where(hard == cv2.GC_BGD, cv2.GC_BGD, np.where(hard == cv2.GC_FGD, cv2.GC_FGD, fine)).astype(np.uint8)
        grabcut(crop, fine, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)
        fg = (fine == cv2.GC_FGD) | (fine == cv2.GC_PR_FGD)
    else:
        fg = cv2.resize(fg_small.astype(np.uint8), (crop_w, crop_h), interpolation=cv2.INTER_NEAREST) > 0
    inside = np.zeros_like(fg)
    inside[y - cy0 : y - cy0 + h, x - cx0 : x - cx0 + w] = True
    fg &= inside
    index = colour_index(np.ascontiguousarray(crop[..., ::-1]))
    return fg, index, (cx0, cy0, cx1 - cx0, cy1 - cy0)


def segment_annotated_frame(frame: np.ndarray, annotation: FrameAnnotation, settings: AnnotatedSettings) -> Seed:
    """The product mask at an annotated frame (full size), or an empty one with the reason."""
    height, width = frame.shape[:2]
    full_index = colour_index(frame)
    if annotation.absent:
        return Seed(annotation.frame, np.zeros((height, width), bool), None, None, [], None, source="absent")
    if annotation.mask is not None:
        mask = annotation.mask.copy()
        box = _bbox(mask)
        ring = np.zeros_like(mask)
        if box is not None:
            margin = int(np.ceil(settings.context * max(box[2], box[3])))
            ring[
                max(0, box[1] - margin) : box[1] + box[3] + margin, max(0, box[0] - margin) : box[0] + box[2] + margin
            ] = True
        ring &= ~mask
        return Seed(
            annotation.frame,
            mask,
            _histogram(full_index, mask),
            _histogram(full_index, ring),
            [],
            None,
            source="mask_png",
        )
    boxes = list(annotation.boxes)
    source = "box"
    if not boxes:  # positive clicks only: a box around them with room for the product
        source = "clicks"
        xs = [p[0] for p in annotation.positives]
        ys = [p[1] for p in annotation.positives]
        pad = max(16, int(0.1 * min(height, width)))
        x0, y0 = max(0, min(xs) - pad), max(0, min(ys) - pad)
        x1, y1 = min(width, max(xs) + pad + 1), min(height, max(ys) + pad + 1)
        boxes = [(x0, y0, x1 - x0, y1 - y0)]
    mask = np.zeros((height, width), bool)
    fg_pixels = np.zeros((height, width), bool)
    ring_pixels = np.zeros((height, width), bool)
    ious: list[float] = []
    empty: list[str] = []
    for box in boxes:
        fg, index, (cx, cy, cw, ch) = _grabcut_box(frame, box, annotation.positives, annotation.negatives, settings)
        x, y, w, h = box
        in_box = np.zeros((ch, cw), bool)
        in_box[y - cy : y - cy + h, x - cx : x - cx + w] = True
        clicked = any(x <= px < x + w and y <= py < y + h for px, py in annotation.positives)
        local_clicks = [
            (px - cx, py - cy) for px, py in annotation.positives if cx <= px < cx + cw and cy <= py < cy + ch
        ]
        fg = _keep_large_components(fg, local_clicks)
        share = float(fg.sum()) / max(1, w * h)
        similarity = bhattacharyya(_histogram(index, fg), _histogram(index, ~in_box))
        if not clicked and share < settings.min_fg_share:
            empty.append(f"box {box}: GrabCut kept {share:.1%} of it (< {settings.min_fg_share:.0%}): no product")
            continue
        if not clicked and not np.isnan(similarity) and similarity > settings.max_ring_similarity:
            empty.append(
                f"box {box}: what GrabCut kept looks like the background around the box (colour overlap "
                f"{similarity:.2f} > {settings.max_ring_similarity}): no distinct product"
            )
            continue
        mask[cy : cy + ch, cx : cx + cw] |= fg
        fg_pixels[cy : cy + ch, cx : cx + cw] |= fg
        ring_pixels[cy : cy + ch, cx : cx + cw] |= ~in_box
        local = _bbox(fg)
        ious.append(box_iou((local[0] + cx, local[1] + cy, local[2], local[3]) if local else None, box))
    ring_pixels &= ~mask
    return Seed(
        annotation.frame,
        mask,
        _histogram(full_index, fg_pixels),
        _histogram(full_index, ring_pixels),
        list(annotation.boxes),
        min(ious) if ious else None,
        empty,
        source,
    )


# -- carrying through a scene --------------------------------------------------------------------
def work_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) of the working grid: the frame scaled so its longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(8, int(round(width * scale))), max(8, int(round(height * scale)))


@dataclass
class _Carry:
    p: np.ndarray  # float32 soft mask at work size
    conf: np.ndarray  # float32 confidence
    key: int  # local index of the annotated frame it came from
    fb_error: float
    untrusted: float
    exited: bool
    absent: bool = False  # lost and not found again: the mask is empty
    reacquired: bool = False  # this frame's mask was found again by the search
    score: float = float("nan")  # the search's best confident match score on this frame
    lost_at: int = -1  # local frame where the carry lost the product (-1 while it holds it)


class _Link:
    """One frame-to-frame step: DIS flows both ways, forward-backward check, warp, edge refinement."""

    def __init__(self, propagator: FlowPropagator, settings: AnnotatedSettings):
        self.propagator = propagator
        self.settings = settings
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def _xy(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape != (height, width):
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            self._grid = (xs, ys)
        return self._grid

    def carry(self, previous: _Carry, source_rgb: np.ndarray, target_rgb: np.ndarray, models: Any) -> _Carry:
        """Bring ``previous`` (on ``source_rgb``'s frame) to ``target_rgb``'s frame."""
        source_gray = cv2.cvtColor(source_rgb, cv2.COLOR_RGB2GRAY)
        target_gray = cv2.cvtColor(target_rgb, cv2.COLOR_RGB2GRAY)
        to_source = self.propagator.flow(target_gray, source_gray)  # target -> source (backward mapping)
        to_target = self.propagator.flow(source_gray, target_gray)
        height, width = to_source.shape[:2]
        xs, ys = self._xy(height, width)
        map_x, map_y = xs + to_source[..., 0], ys + to_source[..., 1]
        back = cv2.remap(to_target, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mismatch = ((to_source + back) ** 2).sum(axis=-1)
        bound = self.settings.fb_alpha * ((to_source**2).sum(axis=-1) + (back**2).sum(axis=-1)) + self.settings.fb_beta
        inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        valid = (mismatch <= bound) & inside
        p = cv2.remap(previous.p, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        conf = cv2.remap(previous.conf, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        conf *= np.where(valid, 1.0, np.where(inside, self.settings.untrusted_decay, 0.0)).astype(np.float32)
        on = p > 0.5
        error = float(np.sqrt(mismatch[on]).mean()) if on.any() else 0.0
        untrusted = float((~valid[on]).mean()) if on.any() else 0.0
        exited = previous.exited or _touches_border(previous.p > 0.5)
        if self.settings.max_photometric_error and on.any():
            # Pixels whose colour jumps along the flow were just covered (a caption, a hand): the
            # product is not visible there any more.
            warped = cv2.remap(source_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            jump = np.abs(warped.astype(np.int16) - target_rgb.astype(np.int16)).mean(axis=-1)
            p = np.where(jump > self.settings.max_photometric_error, 0.0, p).astype(np.float32)
        p = refine_edges(target_rgb, p, models, self.settings)
        return _Carry(p, conf, previous.key, error, untrusted, exited)


def fit_colour_models(
    rgb: np.ndarray, mask: np.ndarray, settings: AnnotatedSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """GrabCut's two colour GMMs (background, product) learnt from an annotated frame's mask, and
    which of the 216 quantised colours the product shows there."""
    area = int(mask.sum())
    if area < settings.min_appearance_pixels:
        return None
    labels, rect = _band_labels(mask, settings, initial=True)
    if labels is None:
        return None
    x, y, w, h = rect
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    crop = np.ascontiguousarray(rgb[y : y + h, x : x + w, ::-1])
    try:
        grabcut(crop, labels, bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    colours = np.bincount(colour_index(rgb)[mask].ravel(), minlength=_BINS)
    return bgd, fgd, colours > 0


def _band_labels(
    mask: np.ndarray, settings: AnnotatedSettings, *, initial: bool = False
) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """GrabCut labels in a crop around ``mask``.

    For fitting (``initial``): sure product in the eroded mask, sure background beyond a band.
    For refining: the whole carried mask is only PROBABLY product (a product that left or was
    covered can disappear), and it may grow by at most ``refine_grow`` pixels.
    """
    box = _bbox(mask)
    if box is None:
        return None, (0, 0, 0, 0)
    height, width = mask.shape
    radius = max(2, int(round(settings.refine_band * np.sqrt(mask.sum()))))
    grow = radius if initial else max(1, settings.refine_grow)
    pad = int(np.ceil(settings.context * max(box[2], box[3]))) + 2 * radius if initial else grow + 4
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(width, box[0] + box[2] + pad), min(height, box[1] + box[3] + pad)
    local = mask[y0:y1, x0:x1].astype(np.uint8)
    outer = cv2.dilate(local, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))) > 0
    labels = np.full(local.shape, cv2.GC_BGD, np.uint8)
    labels[outer] = cv2.GC_PR_BGD
    labels[local > 0] = cv2.GC_PR_FGD
    if initial:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        labels[cv2.erode(local, kernel) > 0] = cv2.GC_FGD
    if (labels == cv2.GC_BGD).sum() < 16:
        labels[:1, :] = labels[-1:, :] = cv2.GC_BGD
        labels[:, :1] = labels[:, -1:] = cv2.GC_BGD
    return labels, (x0, y0, x1 - x0, y1 - y0)


def refine_edges(rgb: np.ndarray, p: np.ndarray, models: Any, settings: AnnotatedSettings) -> np.ndarray:
    """Re-decide a band around the carried mask's edge with the annotated frame's colour models (frozen).

    Stops the slow drift of chained warps: the carried outline snaps back to where the product's
    colours end. The band is ``refine_band`` of the mask's size, so a mask can move its edge by at
    most that much per frame; whole-mask drift is caught by the checks, not hidden.
    """
    on = p > 0.5
    if models is None or not settings.refine_band or on.sum() < settings.min_appearance_pixels:
        return p
    labels, (x, y, w, h) = _band_labels(on, settings)
    if labels is None:
        return p
    crop = np.ascontiguousarray(rgb[y : y + h, x : x + w, ::-1])
    try:
        if settings.refine_mode == "frozen":
            grabcut(crop, labels, models[0].copy(), models[1].copy(), 1, cv2.GC_EVAL_FREEZE_MODEL)
        else:
            grabcut(crop, labels, np.zeros((1, 65)), np.zeros((1, 65)), 1, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return p
    product = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    # GrabCut gives colours neither model has seen to whichever is broader (often the product's):
    # a colour the product never showed on its annotated frame is not the product.
    product &= models[2][colour_index(rgb[y : y + h, x : x + w])]
    out = np.zeros_like(p)
    out[y : y + h, x : x + w] = product.astype(np.float32)
    return out


def _touches_border(mask: np.ndarray, margin: int = 2) -> bool:
    return bool(mask[:margin].any() or mask[-margin:].any() or mask[:, :margin].any() or mask[:, -margin:].any())


@dataclass
class AnnotatedMasks:
    """Soft masks of a whole video at the working size, exact masks at annotated frames, diagnostics."""

    width: int
    height: int
    work_width: int
    work_height: int
    soft: list[np.ndarray]  # uint8 (work_h, work_w) per frame, probability * 255
    exact: dict[int, np.ndarray]  # bit-packed full-size masks of annotated frames
    diagnostics: pd.DataFrame
    seeds: dict[int, dict[str, Any]]
    unannotated_scenes: list[int]
    #: small RGB frames (height 72) from the runs where the product was not re-found, by frame number
    absent_thumbnails: dict[int, np.ndarray] = field(default_factory=dict)

    def probabilities(self, start: int, count: int) -> np.ndarray:
        """float32 ``(count, H, W)`` probabilities for frames ``[start, start + count)`` at full size."""
        out = np.empty((count, self.height, self.width), np.float32)
        for offset in range(count):
            index = start + offset
            if index in self.exact:
                bits = np.unpackbits(self.exact[index], count=self.height * self.width)
                out[offset] = bits.reshape(self.height, self.width)
            else:
                soft = self.soft[index].astype(np.float32) / 255.0
                out[offset] = cv2.resize(soft, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return out


class _SceneCarrier:
    """Carries a scene's seeds in one direction; once the carry has lost the product it stops
    warping an empty mask and searches for the product every ``search_every``-th frame instead."""

    def __init__(
        self,
        smalls: list[np.ndarray],
        seeds_small: dict[int, np.ndarray],
        models: dict[int, Any],
        hists: dict[int, tuple[np.ndarray | None, np.ndarray | None]],
        link: _Link,
    ):
        self.smalls, self.seeds_small, self.models, self.hists, self.link = smalls, seeds_small, models, hists, link
        self.settings = settings = link.settings
        self.key_areas = {k: float((m > 0.5).sum()) for k, m in seeds_small.items()}
        self.search = (
            ProductSearch(
                smalls,
                seeds_small,
                max_side=settings.search_max_side,
                min_score=settings.min_match_score,
            )
            if settings.reacquire
            else None
        )
        self._empty = np.zeros(smalls[0].shape[:2], np.float32)

    def run(self, forward: bool) -> list[_Carry | None]:
        """Every frame's carry in one direction (None before the first annotated frame met)."""
        n, keys = len(self.smalls), sorted(self.seeds_small)
        order = range(keys[0], n) if forward else range(keys[-1], -1, -1)
        step = 1 if forward else -1
        out: list[_Carry | None] = [None] * n
        for i in order:
            if i in self.seeds_small:
                out[i] = _Carry(self.seeds_small[i], np.ones_like(self._empty), i, 0.0, 0.0, False)
            else:
                previous = out[i - step]
                assert previous is not None
                out[i] = self._step(previous, i - step, i)
        return out

    def _lost(self, carry: _Carry) -> bool:
        key_area = self.key_areas[carry.key]
        return key_area > 0 and float((carry.p > 0.5).sum()) < self.settings.lost_share * key_area

    def _step(self, previous: _Carry, source: int, target: int) -> _Carry:
        if previous.absent:
            carry = _Carry(self._empty, self._empty, previous.key, 0.0, 0.0, previous.exited, lost_at=previous.lost_at)
        else:
            carry = self.link.carry(previous, self.smalls[source], self.smalls[target], self.models[previous.key])
            if not self._lost(carry):
                return carry
            carry.lost_at = previous.lost_at if previous.lost_at >= 0 else target
            if previous.lost_at < 0 and self.search is not None:
                self.search.remember(_bbox(previous.p > 0.5))
        if self.search is not None and abs(target - carry.lost_at) % max(1, self.settings.search_every) == 0:
            found = self._reacquire(target)
            if found is not None:
                return found
        if float((carry.p > 0.5).sum()) < self.settings.min_appearance_pixels:
            return _Carry(
                self._empty, self._empty, carry.key, 0.0, 0.0, carry.exited, absent=True, lost_at=carry.lost_at
            )
        return carry  # a remnant of the product is still carried

    def _reacquire(self, target: int) -> _Carry | None:
        """The product found again on frame ``target``: a template match, snapped to its colours,
        that keeps half the matched area and looks more like the product than its surroundings."""
        assert self.search is not None
        match = self.search.find(self.smalls[target])
        if match is None:
            return None
        rgb = self.smalls[target]
        p = refine_edges(rgb, match.mask, self.models[match.key], self.settings)
        on = p > 0.5
        if on.sum() < max(self.settings.min_appearance_pixels, 0.5 * (match.mask > 0.5).sum()):
            return None
        fg_hist, ring_hist = self.hists[match.key]
        seen = _histogram(colour_index(rgb), on)
        if (
            fg_hist is not None
            and ring_hist is not None
            and bhattacharyya(seen, fg_hist) <= bhattacharyya(seen, ring_hist)
        ):
            return None
        return _Carry(
            p.astype(np.float32),
            np.ones_like(self._empty),
            match.key,
            0.0,
            0.0,
            False,
            reacquired=True,
            score=match.score,
        )


def annotated_video_masks(
    video_path: str | os.PathLike[str],
    scene_ranges: Sequence[tuple[int, int]],
    annotations: dict[int, FrameAnnotation],
    settings: AnnotatedSettings | None = None,
) -> AnnotatedMasks:
    """Segment every annotated frame and carry the masks through their scenes (see module docstring)."""
    settings = settings or AnnotatedSettings()
    propagator = FlowPropagator(fb_alpha=settings.fb_alpha, fb_beta=settings.fb_beta)
    link = _Link(propagator, settings)
    reader = _SceneReader(video_path, int(scene_ranges[-1][1]), settings)
    builder = _MaskBuilder(reader.work_w, reader.work_h, reader.total, link, settings)
    by_scene: dict[int, dict[int, FrameAnnotation]] = {}
    for index, annotation in annotations.items():
        by_scene.setdefault(annotation.scene_index, {})[index] = annotation
    for scene_index, (start, stop) in enumerate(scene_ranges):
        scene_annotations = by_scene.get(scene_index, {})
        smalls, seeds = reader.read_scene(start, stop, scene_annotations)
        if scene_annotations:
            builder.add_scene(scene_index, start, stop, smalls, seeds)
        else:
            builder.skip_scene(scene_index, start, stop)
    reader.close()
    return builder.result(reader.width, reader.height)


class _SceneReader:
    """Decodes the video once, scene after scene: annotated scenes' frames at the working size and their seeds."""

    def __init__(self, video_path: str | os.PathLike[str], total: int, settings: AnnotatedSettings):
        self.video_path = video_path
        self.total = total
        self.settings = settings
        self._frames = iter_frames(video_path)
        first = next(self._frames)
        self.height, self.width = first.shape[:2]
        self.work_w, self.work_h = work_size(self.width, self.height, settings.work_max_side)
        self._stream = itertools.chain([first], self._frames)
        self.position = 0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        if (self.work_w, self.work_h) == (self.width, self.height):
            return frame
        return cv2.resize(frame, (self.work_w, self.work_h), interpolation=cv2.INTER_AREA)

    def read_scene(
        self, start: int, stop: int, annotations: dict[int, FrameAnnotation]
    ) -> tuple[list[np.ndarray], dict[int, Seed]]:
        """Frames up to ``stop``; of an annotated scene the small frames and the seeds of its annotated frames."""
        smalls: list[np.ndarray] = []
        seeds: dict[int, Seed] = {}
        while self.position < stop:
            try:
                frame = next(self._stream)
            except StopIteration:
                raise ValueError(
                    f"video {self.video_path}: ended after {self.position} frames; the scenes cover {self.total}"
                ) from None
            if self.position >= start:
                if annotations:
                    smalls.append(self._small(frame))
                if self.position in annotations:
                    seeds[self.position] = segment_annotated_frame(frame, annotations[self.position], self.settings)
            self.position += 1
        return smalls, seeds

    def close(self) -> None:
        self._frames.close()


class _MaskBuilder:
    """A video's masks scene by scene: soft ones at the working size, exact ones on annotated frames, diagnostics."""

    def __init__(self, work_w: int, work_h: int, total: int, link: _Link, settings: AnnotatedSettings):
        self.work_w, self.work_h = work_w, work_h
        self.link = link
        self.settings = settings
        self.soft: list[np.ndarray] = [np.zeros((work_h, work_w), np.uint8)] * total
        self.exact: dict[int, np.ndarray] = {}
        self.seeds_info: dict[int, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.unannotated: list[int] = []
        self.thumbnails: dict[int, np.ndarray] = {}

    def skip_scene(self, scene_index: int, start: int, stop: int) -> None:
        """A scene without annotations: empty masks, listed."""
        self.unannotated.append(scene_index + 1)
        self.rows.extend(_empty_rows(start, stop, scene_index, "unannotated"))

    def add_scene(
        self, scene_index: int, start: int, stop: int, smalls: list[np.ndarray], seeds: dict[int, Seed]
    ) -> None:
        """Carry the scene's seeds both ways through it and keep every frame's mask and diagnostics."""
        seeds_small = {
            index - start: cv2.resize(
                seed.mask.astype(np.float32), (self.work_w, self.work_h), interpolation=cv2.INTER_AREA
            )
            for index, seed in seeds.items()
        }
        models = {
            local: fit_colour_models(smalls[local], mask > 0.5, self.settings) for local, mask in seeds_small.items()
        }
        hists = {index - start: (seed.fg_hist, seed.ring_hist) for index, seed in seeds.items()}
        carrier = _SceneCarrier(smalls, seeds_small, models, hists, self.link)
        forward, backward = carrier.run(forward=True), carrier.run(forward=False)
        keys = sorted(seeds_small)
        absent: list[int] = []
        for local in range(stop - start):
            index = start + local
            annotated = local in seeds_small
            if annotated:
                self._keep_seed(index, scene_index, seeds[index])
                p, chosen, err, untrusted, exited = seeds_small[local], forward[local], 0.0, 0.0, False
            else:
                p, chosen, err, untrusted, exited = _blend_carries(local, keys, forward[local], backward[local])
            p = np.clip(p, 0.0, 1.0).astype(np.float32)
            self.soft[index] = np.round(p * 255).astype(np.uint8)
            key_frame = start + (chosen.key if chosen is not None and not annotated else local)
            key_areas = [float((seeds_small[k] > 0.5).mean()) for k in _keys_around(local, keys)]
            reached = [] if annotated else [c for c in (forward[local], backward[local]) if c is not None]
            if reached and all(c.absent for c in reached):
                absent.append(local)
            row = _diagnostic_row(
                index,
                scene_index,
                annotated,
                p,
                colour_index(smalls[local]),
                seeds[key_frame],
                err,
                untrusted,
                exited,
                key_areas,
                self.settings,
            )
            row["absent"] = bool(reached) and all(c.absent for c in reached)
            row["reacquired"] = any(c.reacquired for c in reached)
            row["reacquire_score"] = max((c.score for c in reached if not np.isnan(c.score)), default=np.nan)
            self.rows.append(row)
        self._keep_thumbnails(start, smalls, absent)

    def _keep_thumbnails(self, start: int, smalls: list[np.ndarray], absent: list[int]) -> None:
        """Small copies of the first, middle and last frame of each run where the product was not re-found."""
        per_run, height = max(1, self.settings.absent_thumbnails), 72
        for first, last in absent_ranges(absent):
            for local in sorted({first, (first + last) // 2, last})[:per_run]:
                if len(self.thumbnails) >= 4 * per_run:
                    return
                frame = smalls[local]
                width = max(8, int(round(frame.shape[1] * height / frame.shape[0])))
                self.thumbnails[start + local] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)

    def _keep_seed(self, index: int, scene_index: int, seed: Seed) -> None:
        self.exact[index] = np.packbits(seed.mask.reshape(-1))
        self.seeds_info[index] = {
            "frame": index,
            "scene": scene_index + 1,
            "source": seed.source,
            "boxes": seed.boxes,
            "box_iou": seed.box_iou,
            "empty_boxes": seed.empty_boxes,
            "coverage": float(seed.mask.mean()),
        }

    def result(self, width: int, height: int) -> AnnotatedMasks:
        diagnostics = pd.DataFrame(self.rows, columns=DIAGNOSTIC_COLUMNS)
        return AnnotatedMasks(
            width,
            height,
            self.work_w,
            self.work_h,
            self.soft,
            self.exact,
            diagnostics,
            self.seeds_info,
            self.unannotated,
            self.thumbnails,
        )


def _blend_carries(
    local: int, keys: list[int], fwd: _Carry | None, bwd: _Carry | None
) -> tuple[np.ndarray, _Carry, float, float, bool]:
    """A carried frame's mask from the carries that reach it: (p, the nearer carry, fb error, untrusted, exited).

    Between two annotated frames each direction is weighted by temporal closeness times confidence.
    """
    if fwd is None or bwd is None:
        chosen = fwd if fwd is not None else bwd
        assert chosen is not None
        return chosen.p, chosen, chosen.fb_error, chosen.untrusted, chosen.exited
    prev_key = max(k for k in keys if k < local)
    next_key = min(k for k in keys if k > local)
    span = next_key - prev_key
    w_f = (next_key - local) / span * fwd.conf
    w_b = (local - prev_key) / span * bwd.conf
    total_w = w_f + w_b
    fallback = ((next_key - local) * fwd.p + (local - prev_key) * bwd.p) / span
    p = np.where(total_w > 1e-3, (w_f * fwd.p + w_b * bwd.p) / np.maximum(total_w, 1e-3), fallback)
    near_f = (local - prev_key) <= (next_key - local)
    chosen = fwd if near_f else bwd
    err = min(fwd.fb_error, bwd.fb_error)  # the frame is suspect only if neither link holds
    untrusted = min(fwd.untrusted, bwd.untrusted)
    return p, chosen, err, untrusted, chosen.exited


def _keys_around(local: int, keys: list[int]) -> list[int]:
    """The annotated frames at or before and at or after ``local`` (either may be missing)."""
    around = (
        max((k for k in keys if k <= local), default=None),
        min((k for k in keys if k >= local), default=None),
    )
    return [k for k in around if k is not None]


DIAGNOSTIC_COLUMNS: tuple[str, ...] = (
    "frame",
    "scene_number",
    "source",
    "key_frame",
    "coverage",
    "key_coverage",
    "key_coverage_min",
    "area_ratio",
    "area_ratio_min",
    "fb_error",
    "untrusted_share",
    "touches_border",
    "exited",
    "appearance_product",
    "appearance_background",
    "box_iou",
    "empty_boxes",
    "absent",
    "reacquired",
    "reacquire_score",
)


def _empty_rows(start: int, stop: int, scene_index: int, source: str) -> list[dict[str, Any]]:
    return [
        {
            "frame": i,
            "scene_number": scene_index + 1,
            "source": source,
            "key_frame": -1,
            "coverage": 0.0,
            "key_coverage": 0.0,
            "key_coverage_min": 0.0,
            "area_ratio": np.nan,
            "area_ratio_min": np.nan,
            "fb_error": 0.0,
            "untrusted_share": 0.0,
            "touches_border": False,
            "exited": False,
            "appearance_product": np.nan,
            "appearance_background": np.nan,
            "box_iou": np.nan,
            "empty_boxes": "",
            "absent": False,
            "reacquired": False,
            "reacquire_score": np.nan,
        }
        for i in range(start, stop)
    ]


def _diagnostic_row(
    index: int,
    scene_index: int,
    annotated: bool,
    p: np.ndarray,
    colour: np.ndarray,
    seed: Seed,
    fb_error: float,
    untrusted: float,
    exited: bool,
    key_areas: list[float],
    settings: AnnotatedSettings,
) -> dict[str, Any]:
    """One frame's diagnostics; ``key_areas`` are the coverages of the annotated frames on either side."""
    on = p > 0.5
    coverage = float(on.mean())
    key_coverage = max(key_areas)
    fg = bhattacharyya(_histogram(colour, on), seed.fg_hist) if on.sum() >= settings.min_appearance_pixels else np.nan
    bg = bhattacharyya(_histogram(colour, on), seed.ring_hist) if on.sum() >= settings.min_appearance_pixels else np.nan
    iou = np.nan
    if annotated and seed.box_iou is not None:
        iou = seed.box_iou
    return {
        "frame": index,
        "scene_number": scene_index + 1,
        "source": ("annotated:" + seed.source) if annotated else "carried",
        "key_frame": seed.frame,
        "coverage": coverage,
        "key_coverage": key_coverage,
        "key_coverage_min": min(key_areas),
        "area_ratio": coverage / key_coverage if key_coverage > 0 else np.nan,
        "area_ratio_min": coverage / min(key_areas) if min(key_areas) > 0 else np.nan,
        "fb_error": fb_error,
        "untrusted_share": untrusted,
        "touches_border": _touches_border(on),
        "exited": exited,
        "appearance_product": fg,
        "appearance_background": bg,
        "box_iou": iou,
        "empty_boxes": "; ".join(seed.empty_boxes) if annotated else "",
    }


# -- checks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskCheck:
    """One check's verdict with the frames that failed it."""

    name: str
    passed: bool
    failing_frames: list[int]
    detail: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CHECK_DESCRIPTIONS: dict[str, str] = {
    "annotated_area_band": "Carried mask area stays within a band of its annotated frame's (shrinking allowed once the product reaches the frame edge).",
    "annotated_flow_consistency": "Forward-backward DIS flow error on the mask is small and most mask pixels are trusted by a flow direction.",
    "annotated_box_iou": "On annotated frames the mask's bounding box matches the annotated box.",
    "annotated_appearance": "Carried mask pixels look more like the annotated product than like its surroundings (colour histograms).",
    "annotated_product_found": "After the product left the frame or was covered, it was found again (a warning lists the frames where it was not: add a box there).",
}

#: checks that only warn: frames without the product are allowed, the user decides whether it is really gone
WARN_CHECKS: frozenset[str] = frozenset({"annotated_product_found"})


def _frames_text(frames: list[int], limit: int = 40) -> str:
    shown = ", ".join(str(f) for f in frames[:limit])
    return shown + (f", ... ({len(frames)} frames)" if len(frames) > limit else "")


def check_annotated_masks(diagnostics: pd.DataFrame, settings: AnnotatedSettings | None = None) -> list[MaskCheck]:
    """Pass/fail per check with the failing frame numbers (a drifting mask fails, naming its frames)."""
    settings = settings or AnnotatedSettings()
    d = diagnostics
    if "absent" not in d.columns:  # diagnostics written before re-acquisition existed
        d = d.assign(absent=False)
    carried = d[d["source"] == "carried"]
    low, high = settings.area_band
    # Between two annotated frames the product may be any size between theirs (two products may
    # even overlap in time): too big means above ``high`` x the larger one, too small below
    # ``low`` x the smaller one (unless the product is leaving through the frame edge).
    too_big = carried[carried["area_ratio"] > high]
    too_small = carried[
        (carried["area_ratio_min"] < low) & ~carried["exited"] & ~carried["touches_border"] & ~carried["absent"]
    ]
    area_bad = sorted(set(too_big["frame"]) | set(too_small["frame"]))
    shown = carried[carried["coverage"] > 0]  # an empty mask has no flow error to speak of
    flow_bad_df = shown[
        (shown["fb_error"] > settings.max_fb_error) | (shown["untrusted_share"] > settings.max_untrusted_share)
    ]
    annotated = d[d["source"].str.startswith("annotated")]
    iou_bad_df = annotated[annotated["box_iou"].notna() & (annotated["box_iou"] < settings.min_box_iou)]
    looked = carried[carried["appearance_product"].notna() & carried["appearance_background"].notna()]
    drift_df = looked[looked["appearance_product"] < looked["appearance_background"]]
    empty_boxes = annotated[annotated["empty_boxes"] != ""]
    checks = [
        MaskCheck(
            "annotated_area_band",
            not area_bad,
            [int(f) for f in area_bad],
            f"band {low}-{high} x the annotated frame's area; {len(too_big)} frames too large, {len(too_small)} too "
            f"small away from the frame edge" + (f": frames {_frames_text(area_bad)}" if area_bad else ""),
            CHECK_DESCRIPTIONS["annotated_area_band"],
        ),
        MaskCheck(
            "annotated_flow_consistency",
            flow_bad_df.empty,
            [int(f) for f in flow_bad_df["frame"]],
            f"on frames with a mask: max mean forward-backward error {shown['fb_error'].max() if len(shown) else 0:.2f} px "
            f"(limit {settings.max_fb_error}), max untrusted share {shown['untrusted_share'].max() if len(shown) else 0:.2f} "
            f"(limit {settings.max_untrusted_share})"
            + (f"; failing frames {_frames_text([int(f) for f in flow_bad_df['frame']])}" if len(flow_bad_df) else ""),
            CHECK_DESCRIPTIONS["annotated_flow_consistency"],
        ),
        MaskCheck(
            "annotated_box_iou",
            iou_bad_df.empty,
            [int(f) for f in iou_bad_df["frame"]],
            f"min box IoU {annotated['box_iou'].min() if annotated['box_iou'].notna().any() else float('nan'):.2f} "
            f"(limit {settings.min_box_iou})"
            + (f"; failing frames {_frames_text([int(f) for f in iou_bad_df['frame']])}" if len(iou_bad_df) else "")
            + (
                "; boxes left empty (no product found): "
                + " | ".join(f"frame {int(r.frame)}: {r.empty_boxes}" for r in empty_boxes.itertuples())
                if len(empty_boxes)
                else ""
            ),
            CHECK_DESCRIPTIONS["annotated_box_iou"],
        ),
        MaskCheck(
            "annotated_appearance",
            drift_df.empty,
            [int(f) for f in drift_df["frame"]],
            f"{len(drift_df)} of {len(looked)} carried frames look more like the background than the product"
            + (f": frames {_frames_text([int(f) for f in drift_df['frame']])}" if len(drift_df) else ""),
            CHECK_DESCRIPTIONS["annotated_appearance"],
        ),
        _product_found_check(d),
    ]
    return checks


def _product_found_check(diagnostics: pd.DataFrame) -> MaskCheck:
    """Passes when no frame is "absent (not re-found)"; else names the runs of such frames."""
    frames = [int(f) for f in diagnostics.loc[diagnostics["absent"].astype(bool), "frame"]]
    runs = absent_ranges(frames)
    shown = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs[:20])
    detail = (
        "the product was found in every frame after it left or was covered"
        if not frames
        else f"product absent (not re-found) in {len(frames)} frames: {shown}"
        + (f" (+{len(runs) - 20} more runs)" if len(runs) > 20 else "")
        + "; if it is there, add a box on a frame of each run"
    )
    return MaskCheck(
        "annotated_product_found", not frames, frames, detail, CHECK_DESCRIPTIONS["annotated_product_found"]
    )


def save_mask_diagnostics(path: str | os.PathLike[str], diagnostics: pd.DataFrame | None) -> Path | None:
    """Write the per-frame diagnostics as Parquet (atomically), or remove a stale file when there are none."""
    path = Path(path)
    if diagnostics is None:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        diagnostics.to_parquet(tmp, index=False)
    return path


# -- the segmenter --------------------------------------------------------------------------------
class AnnotatedSegmenter:
    """The ``annotated`` segmenter: masks from the annotations, computed once per video in ``prepare``.

    ``video_id`` and ``scene_ranges`` come from the video catalog; the annotations from
    ``raw/annotations.csv`` and ``raw/annotation_masks/<video id>/`` of ``layout`` (or the given
    ``annotations_csv`` / ``masks_dir``).
    """

    name = "annotated"

    def __init__(
        self,
        video_id: str,
        scene_ranges: Sequence[tuple[int, int]],
        *,
        layout: DataLayout | None = None,
        annotations_csv: str | os.PathLike[str] | None = None,
        masks_dir: str | os.PathLike[str] | None = None,
        settings: AnnotatedSettings | None = None,
    ):
        self.video_id = video_id
        self.scene_ranges = [(int(a), int(b)) for a, b in scene_ranges]
        if annotations_csv is None and layout is not None:
            annotations_csv = annotations_path(layout)
        if masks_dir is None and layout is not None:
            masks_dir = annotation_masks_dir(layout, video_id)
        self.annotations_csv = Path(annotations_csv) if annotations_csv is not None else None
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.settings = settings or AnnotatedSettings()
        table = (
            read_annotations(self.annotations_csv) if self.annotations_csv and self.annotations_csv.is_file() else None
        )
        self._rows = table.rows_for(video_id) if isinstance(table, AnnotationTable) else []
        self.result: AnnotatedMasks | None = None
        self.annotations: dict[int, FrameAnnotation] = {}
        self._digest: str | None = None

    def prepare(self, probe: VideoProbe) -> None:
        """Validate the annotations against the video and compute every frame's mask."""
        if self.scene_ranges[-1][1] != probe.frame_count:
            raise ValueError(
                f"video {self.video_id}: scenes cover {self.scene_ranges[-1][1]} frames, the video has {probe.frame_count}"
            )
        self.annotations = resolve_annotations(
            self.video_id,
            self._rows,
            self.scene_ranges,
            probe.width,
            probe.height,
            csv_path=self.annotations_csv or "annotations.csv",
            masks_dir=self.masks_dir,
        )
        if not self.annotations:
            raise ValueError(
                f"video {self.video_id}: no annotations in {self.annotations_csv} or {self.masks_dir} "
                "(make them with `align-annotate`)"
            )
        self._digest = annotations_digest(self.annotations)
        self.result = annotated_video_masks(probe.path, self.scene_ranges, self.annotations, self.settings)

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray:
        if self.result is None:
            raise RuntimeError(f"annotated segmenter for video {self.video_id}: prepare() was not called")
        frames = np.asarray(frames)
        if frames.shape[1:3] != (self.result.height, self.result.width):
            raise ValueError(f"video {self.video_id}: frames {frames.shape[1:3]} differ from the prepared video")
        return self.result.probabilities(start, frames.shape[0])

    @property
    def diagnostics(self) -> pd.DataFrame | None:
        return None if self.result is None else self.result.diagnostics

    @property
    def absent_thumbnails(self) -> dict[int, np.ndarray] | None:
        """Small frames where the product was not re-found (for the masks stage's strip), by frame number."""
        return None if self.result is None else self.result.absent_thumbnails

    def checks(self) -> list[MaskCheck]:
        if self.result is None:
            raise RuntimeError("prepare() was not called")
        return check_annotated_masks(self.result.diagnostics, self.settings)

    def lineage(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        return {
            "segmenter": self.name,
            "mask_source": "annotated",
            "annotations_file": str(self.annotations_csv) if self.annotations_csv else None,
            "annotation_rows": [row.line for row in self._rows],
            "mask_pngs": sorted(a.mask_file for a in self.annotations.values() if a.mask_file),
            "annotations_sha256": self._digest,
            "annotated_frames": sorted(self.annotations),
            "unannotated_scenes": self.result.unannotated_scenes if self.result else None,
            "method": "GrabCut (OpenCV) at the box's scale + DIS flow carry both ways, forward-backward checked"
            + (", template search to re-acquire a lost product" if self.settings.reacquire else ""),
            "opencv": cv2.__version__,
            "weights": None,
            "settings": json.loads(json.dumps(settings)),
        }


class ClipSegWithAnnotations:
    """CLIPSeg probabilities constrained by the annotations: ``clipseg+annotated``.

    In scenes with annotations, CLIPSeg's probability is kept only near the annotated product:
    it is multiplied by the annotated mask (carried through the scene) dilated by
    ``margin`` of the frame's shorter side, so CLIPSeg decides the exact outline but cannot
    place the product elsewhere. Scenes without annotations keep CLIPSeg's probabilities.
    """

    name = "clipseg+annotated"

    def __init__(self, clipseg: Any, annotated: AnnotatedSegmenter, margin: float = 0.03):
        self.clipseg = clipseg
        self.annotated = annotated
        self.margin = margin

    def prepare(self, probe: VideoProbe) -> None:
        self.clipseg.prepare(probe)
        self.annotated.prepare(probe)
        self._unannotated_frames = np.zeros(probe.frame_count, bool)
        for number in self.annotated.result.unannotated_scenes:
            start, stop = self.annotated.scene_ranges[number - 1]
            self._unannotated_frames[start:stop] = True

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray:
        probs = np.asarray(self.clipseg.segment(frames, keyword, start=start), np.float32)
        region = self.annotated.segment(frames, keyword, start=start)
        radius = max(1, int(round(self.margin * min(region.shape[1:]))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        out = probs.copy()
        for i in range(probs.shape[0]):
            if self._unannotated_frames[start + i]:
                continue
            near = cv2.dilate((region[i] > 0.5).astype(np.uint8), kernel).astype(np.float32)
            if radius > 1:  # 1 on the dilated product, a soft fall-off just outside it
                near = np.maximum(near, cv2.GaussianBlur(near, (0, 0), radius / 2.0))
            out[i] = probs[i] * np.clip(near, 0.0, 1.0)
        return out

    @property
    def diagnostics(self) -> pd.DataFrame | None:
        return self.annotated.diagnostics

    @property
    def absent_thumbnails(self) -> dict[int, np.ndarray] | None:
        return self.annotated.absent_thumbnails

    def checks(self) -> list[MaskCheck]:
        return self.annotated.checks()

    def lineage(self) -> dict[str, Any]:
        return {
            "segmenter": self.name,
            "mask_source": "clipseg+annotated",
            "clipseg": self.clipseg.lineage(),
            "annotated": self.annotated.lineage(),
            "constraint_margin": self.margin,
        }
