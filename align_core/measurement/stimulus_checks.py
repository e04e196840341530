"""Stimulus checks: protected content survived every variant, and so did the ad's information.

Two checks on the rendered files (decoded as a viewer sees them), against the BASELINE variant
(same pipeline and codec as every other variant, zero control change):

- **protected fidelity**: inside the protected regions (:mod:`align_core.perception.protect`) every
  variant equals baseline up to codec noise. PSNR against baseline over the protected pixels,
  pooled over the video and per frame, must each reach ``min(min_psnr_db, codec PSNR) -
  codec_margin_db``, where the codec PSNR is baseline against the SOURCE at the same pixels
  (what H.264 alone costs there, pooled or in that frame). So 40 dB is required wherever the
  codec itself keeps 40 dB; where it does not, a variant may differ from baseline no more than
  the codec differs from the source, with ``codec_margin_db`` = 3 dB because two encodes with
  independent noise of the same power differ by twice that power. (At the platform's CRF 18, sharp outlined captions cost
  34-37 dB against the source on the demo ads and the tests' overlay: a flat 40 dB would fail
  pixels no editor touched.) Every number is stored per variant.
- **information**: text recognised (PP-OCRv4) in baseline frames is recognised identically in
  every variant. On up to ``ocr_frames`` frames at which the protect stage found text, the
  baseline frame is read (detection + recognition); every text box whose centre is protected
  is then read by recognition alone at the same box in the baseline and in each variant (so the
  detector's frame-to-frame flakiness is not counted). Only text that is **stable in baseline**
  is compared: the box must be read identically (spaces aside) on ``stable_reads`` (3)
  consecutive baseline frames that include the OCR frame, inside its scene. An overlay (caption, price,
  logo) is; text that moves or is covered and uncovered (a signer's printed sweatshirt behind
  moving hands, read "MISITS", "MISFITS", "MISANS" on neighbouring frames of the real ``help``
  clip) is not, and its reads then flip with codec noise alone. Such boxes are kept in the OCR
  table with their baseline reads and reported as "unstable in baseline, not compared", never
  dropped. Character error rate = Levenshtein distance / baseline length over the strings
  without spaces (word spacing is no information), per frame over its stable boxes. Passes when
  the mean CER over the compared frames is at most ``max_cer`` (0.02); the largest is reported
  too (a recogniser reading a Hershey "$" as "S" on one frame after re-encoding alone is a
  1-in-18 flip that says nothing about the edit). Baseline itself is compared with the source
  (the codec's own effect, reported, not judged).

A failure says where: the frame and protected region (box) of the worst PSNR deficit, or the
frame, text box and strings of the first changed text; :meth:`StimulusReport.failures` gives
these per variant for the eligibility table (:mod:`align_core.experiments.eligibility`).

:func:`stimulus_card_html` writes the per-video card a reviewer reads: per variant, target vs
achieved alignment under each scorer of the manipulation check, the perceptual budget numbers
when the editor reports them, and these two checks.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from align_core.io.video_io import even_size, lockstep_frames, probe_video
from align_core.measurement.image_metrics import psnr_from_squared_error
from align_core.perception.protect import covering_units
from align_core.stimuli.editing.regions import bounding_box

__all__ = [
    "StimulusPass",
    "StimulusThresholds",
    "UNSTABLE",
    "character_error_rate",
    "check_stimuli",
    "is_stable",
    "stability_window",
    "stimulus_card_html",
]

_CARD_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("align_core.measurement", "templates"), autoescape=True, keep_trailing_newline=True
)


@dataclass(frozen=True)
class StimulusThresholds:
    min_psnr_db: float = 40.0  # PSNR vs baseline inside protected regions (capped by the codec's own, below)
    # pooled and per frame: at least min(min_psnr_db, codec PSNR) minus this. 3 dB = 10 log10(2): two
    # encodes whose noise against the source is independent differ from each other with twice its power.
    codec_margin_db: float = 3.0
    max_cer: float = 0.02  # mean character error rate of recognised text vs baseline
    ocr_frames: int = 8  # frames with text compared by OCR (spread over the video)
    stable_reads: int = 3  # consecutive baseline frames that must read a text box identically for it to be compared


@dataclass
class StimulusReport:
    fidelity: pd.DataFrame  # one row per variant
    ocr: pd.DataFrame  # one row per (variant, frame)
    information: pd.DataFrame  # one row per variant
    thresholds: StimulusThresholds

    @property
    def fidelity_passed(self) -> bool:
        return bool(self.fidelity["passed"].all()) if not self.fidelity.empty else True

    @property
    def information_passed(self) -> bool:
        return bool(self.information["passed"].all()) if not self.information.empty else True

    def failures(self) -> dict[str, list[str]]:
        """Per variant that failed a check: which check, where (frame, region or text box) and by how much."""
        out: dict[str, list[str]] = {}
        for row in self.fidelity.to_dict(orient="records"):
            if not row["passed"]:
                out.setdefault(row["variant"], []).append(
                    f"protected region changed (PSNR vs baseline): {row['where']}; "
                    f"{row['psnr_vs_baseline_db']:.1f} dB over all protected pixels"
                )
        for row in self.information.to_dict(orient="records"):
            if not row["passed"]:
                out.setdefault(row["variant"], []).append(
                    f"protected text changed (OCR): {row['where'] or 'see the OCR table'}; mean CER {row['mean_cer']:.3f} "
                    f"> {self.thresholds.max_cer} over {row['ocr_frames']} frames of text stable in baseline"
                )
        return out

    def table(self) -> pd.DataFrame:
        """Per variant: both checks side by side (the warehouse-friendly summary)."""
        if self.fidelity.empty:
            return self.information.copy()
        return self.fidelity.merge(
            self.information, on=["video_id", "variant"], how="outer", suffixes=("_psnr", "_ocr")
        )


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over the reference's length (0 when both are empty)."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return levenshtein(reference, hypothesis) / len(reference)


def protected_boxes(detections: Sequence[Any], region: np.ndarray | None) -> list[tuple[int, int, int, int]]:
    """Boxes of the detections whose centre lies in ``region`` (all when None), top to bottom."""
    boxes = []
    for d in detections:
        cx, cy = (d.x0 + d.x1 - 1) // 2, (d.y0 + d.y1 - 1) // 2
        if region is None or (0 <= cy < region.shape[0] and 0 <= cx < region.shape[1] and region[cy, cx]):
            boxes.append((d.x0, d.y0, d.x1, d.y1))
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _squash(text: str) -> str:
    return "".join(text.split())


def pick_ocr_frames(text_frames: Sequence[int], count: int) -> list[int]:
    """``count`` frames spread evenly over the frames where text was found."""
    frames = sorted(set(int(f) for f in text_frames))
    if not frames or count <= 0:
        return []
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return sorted({frames[i] for i in picks})


def stability_window(frame: int, units: Sequence[tuple[int, int]], reads: int) -> list[int]:
    """The baseline frames read to decide whether text at ``frame`` is stable.

    Every frame within ``reads - 1`` of ``frame`` inside its scene unit: enough for every run of
    ``reads`` consecutive frames that contains ``frame`` (a caption that appears at ``frame``
    is confirmed by the frames after it, one that ends there by those before).
    """
    start, stop = next(((a, b) for a, b in units if a <= frame < b), (frame, frame + 1))
    reach = max(1, int(reads)) - 1
    return list(range(max(start, frame - reach), min(stop, frame + reach + 1)))


def is_stable(reads: Mapping[int, str], frame: int, run: int) -> bool:
    """True when some ``run`` consecutive frames containing ``frame`` read the same text (spaces aside).

    ``run`` shrinks to the frames available (a short scene), but one frame alone is never
    stable: nothing confirms it. ``run`` <= 1 asks for no confirmation (every read is compared).
    """
    if int(run) <= 1:
        return True
    frames = sorted(reads)
    run = min(int(run), len(frames))
    if run < 2:
        return False
    squashed = {f: _squash(text) for f, text in reads.items()}
    for first in range(len(frames) - run + 1):
        chosen = frames[first : first + run]
        if (
            chosen[0] <= frame <= chosen[-1]
            and chosen[-1] - chosen[0] == run - 1
            and len({squashed[f] for f in chosen}) == 1
        ):
            return True
    return False


_SQUARES = np.arange(256, dtype=np.float64) ** 2


def squared_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Sum of squared differences of two uint8 RGB images over ``mask`` (uint8, non-zero = counted).

    Exact: a histogram of ``|a - b|`` per channel (integer counts) weighted by the squares, the
    same integer an element-wise float64 sum gives, at a fraction of the cost on 1080x1920 frames.
    """
    difference = cv2.absdiff(np.asarray(a), np.asarray(b))
    return float(
        sum(
            cv2.calcHist([difference], [channel], mask, [256], [0, 256]).ravel().astype(np.float64) @ _SQUARES
            for channel in range(3)
        )
    )


def _worst_component(
    region: np.ndarray, values: np.ndarray, reference: np.ndarray
) -> tuple[tuple[int, int, int, int], float]:
    """The connected protected region (box x0, y0, x1, y1) with the lowest PSNR of ``values`` vs ``reference``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    error = ((values.astype(np.float64) - reference.astype(np.float64)) ** 2).sum(axis=-1)
    sums = np.bincount(labels.ravel(), weights=error.ravel(), minlength=count)
    worst, worst_db = 1, float("inf")
    for label in range(1, count):
        db = psnr_from_squared_error(float(sums[label]), int(stats[label, cv2.CC_STAT_AREA]) * 3)
        if db < worst_db:
            worst, worst_db = label, db
    x, y, w, h = (int(v) for v in stats[worst, :4])
    return (x, y, x + w, y + h), worst_db


def _box_text(box: tuple[int, int, int, int]) -> str:
    return f"({box[0]}, {box[1]}, {box[2]}, {box[3]})"


OCR_COLUMNS = [
    "video_id",
    "variant",
    "frame",
    "box",
    "x0",
    "y0",
    "x1",
    "y1",
    "versus",
    "stable",
    "baseline_reads",
    "reference_text",
    "variant_text",
    "distance",
    "length",
    "cer",
]
UNSTABLE = "unstable in baseline, not compared"


def check_stimuli(
    video_id: str,
    source_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    baseline: str,
    protect: Any,
    reader: Any | None,
    thresholds: StimulusThresholds = StimulusThresholds(),
    text_frames: Sequence[int] = (),
    scenes: Sequence[tuple[int, int]] | None = None,
) -> StimulusReport:
    """Both checks in one lockstep decode of the source, baseline and every variant.

    ``protect`` is indexable by frame giving bool ``(H, W)`` (a ``ProtectedRegions``); ``reader``
    is a :class:`~align_core.perception.protect.TextReader` (None skips the information check, recorded as
    not run); ``text_frames`` are the frames where the protect stage recognised text; ``scenes``
    (frame ranges) keep each OCR frame's stability window inside its scene. :class:`StimulusPass`
    is the same check fed by someone else's decode.
    """
    checks = StimulusPass(
        video_id, source_path, variant_paths, baseline, protect, reader, thresholds, text_frames, scenes
    )
    paths = [source_path, *(variant_paths[n] for n in checks.names)]
    for index, current in enumerate(lockstep_frames(paths, (checks.probe.height, checks.probe.width))):
        checks.add(index, current)
    return checks.report()


class StimulusPass:
    """The stimulus checks of :func:`check_stimuli`, fed one lockstep frame tuple at a time.

    ``add(index, (source, *variants))`` for every frame in order (variants in ``variant_paths``
    order, at the source's size), then ``report()``. The manipulation check's decode feeds it in
    the quality stage, so the videos are decoded once for every measurement.
    """

    def __init__(
        self,
        video_id: str,
        source_path: str | os.PathLike[str],
        variant_paths: Mapping[str, str | os.PathLike[str]],
        baseline: str,
        protect: Any,
        reader: Any | None,
        thresholds: StimulusThresholds = StimulusThresholds(),
        text_frames: Sequence[int] = (),
        scenes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if baseline not in variant_paths:
            raise KeyError(f"video {video_id}: the stimulus checks need the baseline variant {baseline!r}")
        self.video_id, self.baseline, self.protect, self.reader, self.thresholds = (
            video_id,
            baseline,
            protect,
            reader,
            thresholds,
        )
        self.names = names = list(variant_paths)
        self.probe = probe = probe_video(source_path)
        for name in names:
            other = probe_video(variant_paths[name])
            # an odd-size source is rendered padded to even by one edge row/column and read back cropped
            sizes = {(probe.height, probe.width), even_size(probe.height, probe.width)}
            if other.frame_count != probe.frame_count or (other.height, other.width) not in sizes:
                raise ValueError(
                    f"video {video_id}: variant {name} ({variant_paths[name]}) has {other.frame_count} frames "
                    f"{other.width}x{other.height}, the source {probe.frame_count} frames {probe.width}x{probe.height}"
                )
        units = covering_units(scenes, probe.frame_count) if scenes else [(0, probe.frame_count)]
        ocr_at = pick_ocr_frames(text_frames, thresholds.ocr_frames) if reader is not None else []
        self.windows = {t: stability_window(t, units, thresholds.stable_reads) for t in ocr_at}
        self.needed = {f for window in self.windows.values() for f in window}
        self.keep_back = max([t - window[0] for t, window in self.windows.items()], default=0)
        self.recent: dict[int, np.ndarray] = {}  # baseline frames a later OCR frame's window reaches back to
        self.pending: dict[int, dict[str, Any]] = {}  # OCR frame -> boxes and reads until its window is complete
        self.sq = {n: {"baseline": 0.0, "source": 0.0} for n in names}
        self.pixels = 0
        self.worst = {n: (float("inf"), -1) for n in names}
        self.deficit = {n: (-float("inf"), -1, float("nan")) for n in names}  # (floor - psnr, frame, floor)
        self.where = {n: "" for n in names}  # the frame and protected region of the largest per-frame deficit
        self.frames_measured = 0
        self.frames_seen = 0
        self.ocr_rows: list[dict[str, Any]] = []
        self.base_i = names.index(baseline) + 1

    def add(self, index: int, current: Sequence[np.ndarray]) -> None:
        """Frame ``index`` of the source and of every variant (every frame of the video, in order)."""
        if index != self.frames_seen:
            raise ValueError(
                f"video {self.video_id}: the stimulus checks got frame {index} after {self.frames_seen} frames"
            )
        self.frames_seen += 1
        region = np.asarray(self.protect[index], dtype=bool) if self.protect is not None else None
        box = bounding_box(region) if region is not None else None
        if box is not None:
            self._fidelity(index, current, region, box)
        if self.reader is not None:
            self._information(index, current, region if box is not None else None)

    def _fidelity(
        self, index: int, current: Sequence[np.ndarray], region: np.ndarray, box: tuple[slice, slice]
    ) -> None:
        """Protected pixels vs baseline and source, read on the region's bounding box only."""
        thresholds, names, baseline, base_i = self.thresholds, self.names, self.baseline, self.base_i
        inside = np.ascontiguousarray(region[box]).view(np.uint8)
        self.frames_measured += 1
        n_px = int(np.count_nonzero(inside)) * 3
        self.pixels += n_px
        base, source = current[base_i][box], current[0][box]
        codec_db = psnr_from_squared_error(squared_error(base, source, inside), n_px)
        floor = min(thresholds.min_psnr_db, codec_db) - thresholds.codec_margin_db
        for i, name in enumerate(names, start=1):
            values = current[i][box]
            err_base = 0.0 if i == base_i else squared_error(values, base, inside)
            self.sq[name]["baseline"] += err_base
            self.sq[name]["source"] += squared_error(values, source, inside)
            frame_psnr = psnr_from_squared_error(err_base, n_px)
            if name != baseline and frame_psnr < self.worst[name][0]:
                self.worst[name] = (frame_psnr, index)
            if name != baseline and floor - frame_psnr > self.deficit[name][0]:
                self.deficit[name] = (floor - frame_psnr, index, floor)
                if floor - frame_psnr > 0:  # a failure: say where (the worst connected protected region)
                    worst_box, box_db = _worst_component(region, current[i], current[base_i])
                    self.where[name] = (
                        f"frame {index}, protected region {_box_text(worst_box)}: {box_db:.1f} dB vs baseline "
                        f"(frame floor {floor:.1f} dB)"
                    )

    def _information(self, index: int, current: Sequence[np.ndarray], region: np.ndarray | None) -> None:
        """OCR of protected text: read at the chosen frames, confirmed on the baseline frames around them."""
        reader, names, baseline, windows = self.reader, self.names, self.baseline, self.windows
        base_frame = current[self.base_i]
        if index in windows:
            boxes = protected_boxes(reader.read(base_frame), region)
            reads = {f: [reader.recognize(self.recent[f], box) for box in boxes] for f in windows[index] if f < index}
            reads[index] = [reader.recognize(base_frame, box) for box in boxes]
            texts = {
                name: reads[index] if name == baseline else [reader.recognize(current[i], box) for box in boxes]
                for i, name in enumerate(names, start=1)
            }
            source_texts = [reader.recognize(current[0], box) for box in boxes]
            self.pending[index] = {"boxes": boxes, "reads": reads, "texts": texts, "source": source_texts}
        for t, entry in self.pending.items():
            if t < index and index in windows[t]:
                entry["reads"][index] = [reader.recognize(base_frame, box) for box in entry["boxes"]]
        for t in [t for t in self.pending if windows[t][-1] == index]:
            self.ocr_rows.extend(
                _ocr_rows(
                    self.video_id, names, baseline, t, windows[t], self.pending.pop(t), self.thresholds.stable_reads
                )
            )
        if index in self.needed:
            self.recent[index] = base_frame.copy()
        for f in [f for f in self.recent if f < index + 1 - self.keep_back]:
            del self.recent[f]

    def report(self) -> StimulusReport:
        """Both checks' tables (every frame must have been added)."""
        if self.frames_seen != self.probe.frame_count:
            raise ValueError(
                f"video {self.video_id}: the stimulus checks saw {self.frames_seen} of {self.probe.frame_count} frames"
            )
        video_id, names, baseline, thresholds, reader = (
            self.video_id,
            self.names,
            self.baseline,
            self.thresholds,
            self.reader,
        )
        sq, pixels, frames_measured = self.sq, self.pixels, self.frames_measured
        ocr_rows = list(self.ocr_rows)
        for t, entry in self.pending.items():  # the video ended before a window did (a short last scene): what was read
            ocr_rows.extend(
                _ocr_rows(video_id, names, baseline, t, sorted(entry["reads"]), entry, thresholds.stable_reads)
            )
        fidelity_rows = []
        for name in names:
            pooled = psnr_from_squared_error(sq[name]["baseline"], pixels)
            worst_db, worst_frame = self.worst[name]
            short, short_frame, floor = self.deficit[name]
            failed_at = ""
            if name == baseline or frames_measured == 0:
                passed, reason = True, ("the reference" if name == baseline else "no protected pixels in this video")
            else:
                codec_pooled = psnr_from_squared_error(sq[baseline]["source"], pixels)
                pooled_floor = min(thresholds.min_psnr_db, codec_pooled) - thresholds.codec_margin_db
                passed = pooled >= pooled_floor and short <= 0
                reason = (
                    f"{pooled:.1f} dB vs baseline over all protected pixels (need >= {pooled_floor:.1f}: "
                    f"min({thresholds.min_psnr_db:.0f}, codec {codec_pooled:.1f}) - {thresholds.codec_margin_db}); "
                    f"worst frame {worst_frame}: {worst_db:.1f} dB; "
                    + (
                        "every frame within codec noise"
                        if short <= 0
                        else f"frame {short_frame} is {short:.1f} dB below its floor {floor:.1f} dB (codec PSNR there, capped at "
                        f"{thresholds.min_psnr_db:.0f}, minus {thresholds.codec_margin_db})"
                    )
                )
                if not passed:
                    failed_at = (
                        self.where[name]
                        if short > 0
                        else f"all protected pixels pooled over {frames_measured} frames (worst frame {worst_frame})"
                    )
            fidelity_rows.append(
                {
                    "video_id": video_id,
                    "variant": name,
                    "frames_measured": frames_measured,
                    "protected_pixels_per_frame": pixels / 3 / max(1, frames_measured),
                    "psnr_vs_baseline_db": pooled,
                    "psnr_worst_frame_db": worst_db if name != baseline else float("inf"),
                    "worst_frame": worst_frame,
                    "psnr_vs_source_db": psnr_from_squared_error(sq[name]["source"], pixels),
                    "codec_psnr_db": psnr_from_squared_error(sq[baseline]["source"], pixels),
                    "passed": bool(passed),
                    "reason": ("passed: " if passed else "failed: ") + reason,
                    "where": failed_at,
                }
            )
        ocr = pd.DataFrame(ocr_rows, columns=OCR_COLUMNS)
        info_rows = [
            _information_row(video_id, name, baseline, ocr[ocr["variant"] == name], reader is not None, thresholds)
            for name in names
        ]
        fidelity = pd.DataFrame(fidelity_rows)
        information = pd.DataFrame(info_rows)
        for table in (fidelity, ocr, information):
            table["video_id"] = table["video_id"].astype("string")
        return StimulusReport(fidelity, ocr, information, thresholds)


def _ocr_rows(
    video_id: str,
    names: Sequence[str],
    baseline: str,
    frame: int,
    window: Sequence[int],
    entry: Mapping[str, Any],
    run: int,
) -> list[dict[str, Any]]:
    """One row per (variant, protected text box) of one OCR frame; only boxes stable in baseline are compared."""
    rows = []
    for b, box in enumerate(entry["boxes"]):
        reads = [entry["reads"][f][b] for f in window]
        stable = is_stable(dict(zip(window, reads, strict=False)), frame, run)
        for name in names:
            reference = entry["source"][b] if name == baseline else entry["reads"][frame][b]
            text = entry["texts"][name][b]
            distance = levenshtein(_squash(reference), _squash(text)) if stable else None
            length = len(_squash(reference))
            rows.append(
                {
                    "video_id": video_id,
                    "variant": name,
                    "frame": int(frame),
                    "box": b,
                    "x0": box[0],
                    "y0": box[1],
                    "x1": box[2],
                    "y1": box[3],
                    "versus": "source" if name == baseline else "baseline",
                    "stable": stable,
                    "baseline_reads": " | ".join(f"{f}: {r}" for f, r in zip(window, reads, strict=False)),
                    "reference_text": reference,
                    "variant_text": text,
                    "distance": distance,
                    "length": length,
                    "cer": (distance / length if length else float(distance > 0)) if stable else float("nan"),
                }
            )
    return rows


def _information_row(
    video_id: str, name: str, baseline: str, rows: pd.DataFrame, ran: bool, thresholds: StimulusThresholds
) -> dict[str, Any]:
    """Per variant: mean CER over frames with text stable in baseline; unstable reads listed, not judged."""
    compared = rows[rows["stable"].astype(bool)]
    unstable = rows[~rows["stable"].astype(bool)]
    per_frame = pd.Series(dtype=float)
    if len(compared):
        sums = compared.groupby("frame")[["distance", "length"]].sum()
        per_frame = pd.Series(
            np.where(
                sums["length"] > 0,
                sums["distance"] / sums["length"].clip(lower=1),
                (sums["distance"] > 0).astype(float),
            ),
            index=sums.index,
        )
    where = ""
    if not ran:
        passed, reason = True, "not run: no text reader"
    elif rows.empty:
        passed, reason = True, "no text recognised in this video"
    elif compared.empty:
        passed, reason = True, "no text stable in baseline to compare"
    else:
        mean_cer, worst_cer = float(per_frame.mean()), float(per_frame.max())
        passed = mean_cer <= thresholds.max_cer if name != baseline else True
        reason = (
            f"mean CER {mean_cer:.3f} (max {worst_cer:.3f}) vs "
            f"{'source (codec only, reported)' if name == baseline else 'baseline'} "
            f"over {len(per_frame)} frames of text stable in baseline (need mean <= {thresholds.max_cer})"
        )
        changed = compared[compared["distance"] > 0]
        if not changed.empty:
            first = changed.iloc[0]
            where = (
                f"frame {int(first['frame'])}, text box {_box_text(tuple(int(first[c]) for c in ('x0', 'y0', 'x1', 'y1')))}: "
                f"{first['reference_text']!r} -> {first['variant_text']!r}"
            )
            reason += f"; {where}"
    if len(unstable):
        examples = unstable.drop_duplicates(["frame", "box"]).head(3)
        shown = "; ".join(f"frame {int(r['frame'])} read {r['baseline_reads']}" for _, r in examples.iterrows())
        reason += (
            f"; {unstable[['frame', 'box']].drop_duplicates().shape[0]} text box(es) {UNSTABLE} ({shown}"
            + (", ..." if unstable[["frame", "box"]].drop_duplicates().shape[0] > 3 else "")
            + ")"
        )
    return {
        "video_id": video_id,
        "variant": name,
        "ocr_frames": int(len(per_frame)),
        "stable_boxes": int(len(compared)),
        "unstable_boxes": int(len(unstable)),
        "mean_cer": float(per_frame.mean()) if len(per_frame) else float("nan"),
        "max_cer": float(per_frame.max()) if len(per_frame) else float("nan"),
        "frames_changed": int((per_frame > 0).sum()),
        "passed": bool(passed),
        "reason": ("passed: " if passed else "failed: ") + reason,
        "where": where if not passed else "",
    }


# -- the stimulus card --------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "pass" if value else "FAIL"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "identical"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame) -> Markup:
    """A DataFrame as an HTML table (cells escaped; failed checks highlighted) for the card template."""
    if frame.empty:
        return Markup("<p><em>no rows</em></p>")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            css = (
                ' class="fail"'
                if (isinstance(value, (bool, np.bool_)) and not value)
                or (isinstance(value, str) and value.startswith("FAILED"))
                else ""
            )
            cells.append(f"<td{css}>{_fmt(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def baseline_text_table(ocr: pd.DataFrame) -> pd.DataFrame:
    """One row per OCR frame and text box: its baseline reads, the text compared, and whether it was compared."""
    if ocr.empty:
        return pd.DataFrame()
    rows = ocr[ocr["versus"] == "baseline"]
    rows = (rows if len(rows) else ocr).drop_duplicates(["frame", "box"])
    return pd.DataFrame(
        {
            "frame": rows["frame"].to_numpy(),
            "box": [f"({r.x0}, {r.y0}, {r.x1}, {r.y1})" for r in rows.itertuples()],
            "baseline_reads": rows["baseline_reads"].to_numpy(),
            "status": np.where(rows["stable"].astype(bool), "compared", UNSTABLE),
            "reference_text": np.where(rows["stable"].astype(bool), rows["reference_text"], ""),
        }
    )


def alignment_by_scorer(manipulation: pd.DataFrame, default_scorer: str) -> pd.DataFrame:
    """Per variant, window and scorer: target vs achieved alignment and change, and the verdict.

    Works with one scorer (no ``scorer`` column: ``default_scorer`` names it) or several.
    """
    if manipulation is None or manipulation.empty:
        return pd.DataFrame()
    table = manipulation.copy()
    if "scorer" not in table.columns:
        table["scorer"] = default_scorer
    wanted = [
        "variant",
        "window",
        "scorer",
        "target_alignment",
        "achieved_alignment",
        "target_delta",
        "achieved_delta",
        "share_achieved",
        "passed",
    ]
    return table[[c for c in wanted if c in table.columns]]


def stimulus_card_html(
    video_id: str,
    report: StimulusReport,
    manipulation: pd.DataFrame | None = None,
    scorer_name: str = "calibrating scorer",
    budget: pd.DataFrame | None = None,
    contact_sheet: str | os.PathLike[str] | None = None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """A self-contained HTML card for one video (contact sheet embedded as a data URI)."""
    sheet = Path(contact_sheet) if contact_sheet is not None else None
    return _CARD_TEMPLATES.get_template("stimulus_card.html").render(
        video_id=video_id,
        contact_sheet_png=base64.b64encode(sheet.read_bytes()).decode("ascii") if sheet and sheet.exists() else "",
        alignment=_table(alignment_by_scorer(manipulation, scorer_name)) if manipulation is not None else None,
        budget=_table(budget) if budget is not None and not budget.empty else None,
        fidelity=_table(report.fidelity.drop(columns=["video_id"], errors="ignore")),
        information=_table(report.information.drop(columns=["video_id"], errors="ignore")),
        baseline_text=None if report.ocr.empty else _table(baseline_text_table(report.ocr)),
        thresholds=report.thresholds,
        thresholds_text=str(asdict(report.thresholds)),
        unstable=UNSTABLE,
        notes=dict(notes or {}),
    )
