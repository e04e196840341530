"""Stimulus checks: protected content survived every variant, and so did the ad's information.

Two checks on the rendered files (decoded as a viewer sees them), against the BASELINE variant
(same pipeline and codec as every other variant, zero control change):

- **protected fidelity**: inside the protected regions (:mod:`align_core.protect`) every
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
  detector's frame-to-frame flakiness is not counted). Character error rate = Levenshtein
  distance / baseline length over the strings without spaces (word spacing is no information),
  per frame over all its boxes. Passes when the mean CER over the compared frames is at most
  ``max_cer`` (0.02); the largest is reported too (a recogniser reading a Hershey "$" as "S" on
  one frame after re-encoding alone is a 1-in-18 flip that says nothing about the edit). Baseline
  itself is compared with the source (the codec's own effect, reported, not judged).

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

import numpy as np
import pandas as pd

from align_core.video_io import iter_frames, probe_video


@dataclass(frozen=True)
class StimulusThresholds:
    min_psnr_db: float = 40.0  # PSNR vs baseline inside protected regions (capped by the codec's own, below)
    # pooled and per frame: at least min(min_psnr_db, codec PSNR) minus this. 3 dB = 10 log10(2): two
    # encodes whose noise against the source is independent differ from each other with twice its power.
    codec_margin_db: float = 3.0
    max_cer: float = 0.02  # mean character error rate of recognised text vs baseline
    ocr_frames: int = 8  # frames with text compared by OCR (spread over the video)


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

    def table(self) -> pd.DataFrame:
        """Per variant: both checks side by side (the warehouse-friendly summary)."""
        if self.fidelity.empty:
            return self.information.copy()
        return self.fidelity.merge(self.information, on=["video_id", "variant"], how="outer", suffixes=("_psnr", "_ocr"))


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


def _psnr(sq_error: float, pixels: int) -> float:
    if pixels == 0:
        return float("nan")
    mse = sq_error / pixels
    return float("inf") if mse == 0 else float(10 * math.log10(255.0**2 / mse))


def pick_ocr_frames(text_frames: Sequence[int], count: int) -> list[int]:
    """``count`` frames spread evenly over the frames where text was found."""
    frames = sorted(set(int(f) for f in text_frames))
    if not frames or count <= 0:
        return []
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return sorted({frames[i] for i in picks})


def check_stimuli(
    video_id: str,
    source_path: str | os.PathLike[str],
    variant_paths: Mapping[str, str | os.PathLike[str]],
    baseline: str,
    protect: Any,
    reader: Any | None,
    thresholds: StimulusThresholds = StimulusThresholds(),
    text_frames: Sequence[int] = (),
) -> StimulusReport:
    """Both checks in one lockstep decode of the source, baseline and every variant.

    ``protect`` is indexable by frame giving bool ``(H, W)`` (a ``ProtectedRegions``); ``reader``
    is a :class:`~align_core.protect.TextReader` (None skips the information check, recorded as
    not run); ``text_frames`` are the frames where the protect stage recognised text.
    """
    if baseline not in variant_paths:
        raise KeyError(f"video {video_id}: the stimulus checks need the baseline variant {baseline!r}")
    names = list(variant_paths)
    probe = probe_video(source_path)
    for name in names:
        other = probe_video(variant_paths[name])
        if (other.frame_count, other.width, other.height) != (probe.frame_count, probe.width, probe.height):
            raise ValueError(
                f"video {video_id}: variant {name} ({variant_paths[name]}) has {other.frame_count} frames "
                f"{other.width}x{other.height}, the source {probe.frame_count} frames {probe.width}x{probe.height}"
            )
    ocr_at = set(pick_ocr_frames(text_frames, thresholds.ocr_frames)) if reader is not None else set()
    sq = {n: {"baseline": 0.0, "source": 0.0} for n in names}
    pixels = 0
    worst = {n: (float("inf"), -1) for n in names}
    deficit = {n: (-float("inf"), -1, float("nan")) for n in names}  # (floor - psnr, frame, floor)
    frames_measured = 0
    ocr_rows: list[dict[str, Any]] = []
    streams = [iter_frames(source_path)] + [iter_frames(variant_paths[n]) for n in names]
    base_i = names.index(baseline) + 1
    for index, current in enumerate(zip(*streams, strict=True)):
        region = np.asarray(protect[index], dtype=bool) if protect is not None else None
        has_region = region is not None and region.any()
        if has_region:
            frames_measured += 1
            n_px = int(region.sum()) * 3
            pixels += n_px
            base = current[base_i][region].astype(np.float64)
            source = current[0][region].astype(np.float64)
            codec_db = _psnr(float(((base - source) ** 2).sum()), n_px)
            floor = min(thresholds.min_psnr_db, codec_db) - thresholds.codec_margin_db
            for i, name in enumerate(names, start=1):
                values = current[i][region].astype(np.float64)
                err_base = float(((values - base) ** 2).sum())
                sq[name]["baseline"] += err_base
                sq[name]["source"] += float(((values - source) ** 2).sum())
                frame_psnr = _psnr(err_base, n_px)
                if name != baseline and frame_psnr < worst[name][0]:
                    worst[name] = (frame_psnr, index)
                if name != baseline and floor - frame_psnr > deficit[name][0]:
                    deficit[name] = (floor - frame_psnr, index, floor)
        if index in ocr_at:
            boxes = protected_boxes(reader.read(current[base_i]), region if has_region else None)
            base_texts = [reader.recognize(current[base_i], box) for box in boxes]
            for i, name in enumerate(names, start=1):
                reference_frame = current[0] if name == baseline else current[base_i]
                references = [reader.recognize(reference_frame, box) for box in boxes] if name == baseline else base_texts
                texts = base_texts if i == base_i and name != baseline else [reader.recognize(current[i], box) for box in boxes]
                distance = sum(levenshtein(_squash(r), _squash(t)) for r, t in zip(references, texts))
                length = sum(len(_squash(r)) for r in references)
                ocr_rows.append({
                    "video_id": video_id, "variant": name, "frame": index,
                    "versus": "source" if name == baseline else "baseline", "boxes": len(boxes),
                    "reference_text": " | ".join(references), "variant_text": " | ".join(texts),
                    "cer": distance / length if length else float(distance > 0),
                })
    fidelity_rows = []
    for name in names:
        pooled = _psnr(sq[name]["baseline"], pixels)
        worst_db, worst_frame = worst[name]
        short, short_frame, floor = deficit[name]
        if name == baseline or frames_measured == 0:
            passed, reason = True, ("the reference" if name == baseline else "no protected pixels in this video")
        else:
            codec_pooled = _psnr(sq[baseline]["source"], pixels)
            pooled_floor = min(thresholds.min_psnr_db, codec_pooled) - thresholds.codec_margin_db
            passed = pooled >= pooled_floor and short <= 0
            reason = (
                f"{pooled:.1f} dB vs baseline over all protected pixels (need >= {pooled_floor:.1f}: "
                f"min({thresholds.min_psnr_db:.0f}, codec {codec_pooled:.1f}) - {thresholds.codec_margin_db}); "
                f"worst frame {worst_frame}: {worst_db:.1f} dB; "
                + (f"every frame within codec noise" if short <= 0 else
                   f"frame {short_frame} is {short:.1f} dB below its floor {floor:.1f} dB (codec PSNR there, capped at "
                   f"{thresholds.min_psnr_db:.0f}, minus {thresholds.codec_margin_db})")
            )
        fidelity_rows.append({
            "video_id": video_id, "variant": name, "frames_measured": frames_measured,
            "protected_pixels_per_frame": pixels / 3 / max(1, frames_measured),
            "psnr_vs_baseline_db": pooled, "psnr_worst_frame_db": worst_db if name != baseline else float("inf"),
            "worst_frame": worst_frame, "psnr_vs_source_db": _psnr(sq[name]["source"], pixels),
            "codec_psnr_db": _psnr(sq[baseline]["source"], pixels),
            "passed": bool(passed), "reason": ("ok: " if passed else "FAILED: ") + reason,
        })
    ocr = pd.DataFrame(ocr_rows, columns=["video_id", "variant", "frame", "versus", "boxes", "reference_text", "variant_text", "cer"])
    info_rows = []
    for name in names:
        rows = ocr[ocr["variant"] == name]
        if reader is None:
            passed, reason = True, "not run: no text reader"
        elif rows.empty:
            passed, reason = True, "no text recognised in this video"
        else:
            mean_cer, worst_cer = float(rows["cer"].mean()), float(rows["cer"].max())
            passed = mean_cer <= thresholds.max_cer if name != baseline else True
            changed = rows[rows["cer"] > 0]
            reason = (f"mean CER {mean_cer:.3f} (max {worst_cer:.3f}) vs "
                      f"{'source (codec only, reported)' if name == baseline else 'baseline'} "
                      f"over {len(rows)} frames (need mean <= {thresholds.max_cer})")
            if not changed.empty:
                first = changed.iloc[0]
                reason += f"; frame {int(first['frame'])}: {first['reference_text']!r} -> {first['variant_text']!r}"
        info_rows.append({
            "video_id": video_id, "variant": name, "ocr_frames": int(len(rows)),
            "mean_cer": float(rows["cer"].mean()) if len(rows) else float("nan"),
            "max_cer": float(rows["cer"].max()) if len(rows) else float("nan"),
            "frames_changed": int((rows["cer"] > 0).sum()),
            "passed": bool(passed), "reason": ("ok: " if passed else "FAILED: ") + reason,
        })
    fidelity = pd.DataFrame(fidelity_rows)
    information = pd.DataFrame(info_rows)
    for table in (fidelity, ocr, information):
        table["video_id"] = table["video_id"].astype("string")
    return StimulusReport(fidelity, ocr, information, thresholds)


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


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>no rows</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            css = ' class="fail"' if (isinstance(value, (bool, np.bool_)) and not value) or (isinstance(value, str) and value.startswith("FAILED")) else ""
            cells.append(f"<td{css}>{_fmt(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def alignment_by_scorer(manipulation: pd.DataFrame, default_scorer: str) -> pd.DataFrame:
    """Per variant, window and scorer: target vs achieved alignment and change, and the verdict.

    Works with one scorer (no ``scorer`` column: ``default_scorer`` names it) or several.
    """
    if manipulation is None or manipulation.empty:
        return pd.DataFrame()
    table = manipulation.copy()
    if "scorer" not in table.columns:
        table["scorer"] = default_scorer
    wanted = ["variant", "window", "scorer", "target_alignment", "achieved_alignment", "target_delta", "achieved_delta",
              "share_achieved", "passed"]
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
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Stimulus card {html.escape(video_id)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}th{background:#f3f3f3}"
        "td.fail{background:#fdd;font-weight:bold}img{max-width:100%;border:1px solid #ccc}</style></head><body>",
        f"<h1>Stimulus card: video {html.escape(video_id)}</h1>",
        "<p>Every variant may differ from baseline only in where attention goes. Outlines on the contact sheet: "
        "product in green, protected regions (text, user regions) in magenta.</p>",
    ]
    if contact_sheet is not None and Path(contact_sheet).exists():
        data = base64.b64encode(Path(contact_sheet).read_bytes()).decode("ascii")
        parts.append(f"<h2>Contact sheet</h2><img alt='contact sheet' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Target vs achieved alignment, per scorer</h2>")
    parts.append(_table(alignment_by_scorer(manipulation, scorer_name)) if manipulation is not None else "<p><em>manipulation check not run</em></p>")
    parts.append("<h2>Perceptual budget (outside product and protected regions)</h2>")
    parts.append(_table(budget) if budget is not None and not budget.empty else "<p><em>the editor reported no budget numbers</em></p>")
    parts.append(f"<h2>Protected regions unchanged (PSNR vs baseline, need &ge; {report.thresholds.min_psnr_db:.0f} dB)</h2>")
    parts.append(_table(report.fidelity.drop(columns=["video_id"], errors="ignore")))
    parts.append(f"<h2>Information check (OCR, need mean CER &le; {report.thresholds.max_cer})</h2>")
    parts.append(_table(report.information.drop(columns=["video_id"], errors="ignore")))
    if not report.ocr.empty:
        shown = report.ocr[report.ocr["versus"] == "baseline"].drop_duplicates("frame")[["frame", "reference_text"]]
        parts.append("<h3>Text recognised in baseline (per compared frame)</h3>" + _table(shown))
    for key, value in (notes or {}).items():
        parts.append(f"<p><b>{html.escape(key)}</b>: {html.escape(value)}</p>")
    parts.append(f"<p><small>thresholds: {html.escape(str(asdict(report.thresholds)))}</small></p></body></html>")
    return "\n".join(parts)
