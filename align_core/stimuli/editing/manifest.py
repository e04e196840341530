"""A render's ``manifest.json``: lineage (input hashes, config, seed, editor and flow lineage,
keyframes, share of frames edited at a keyframe) and per-variant output hashes and edit magnitudes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from align_core.io.hashing import array_sha256, file_sha256
from align_core.io.video_io import VideoWriter
from align_core.stimuli.editing.keyframe_edits import KeyframeEdits
from align_core.stimuli.editing.preview import COMPARISON_COLUMNS
from align_core.stimuli.editing.render_request import VARIANT_CRF, RenderRequest

__all__ = [
    "edit_limits",
    "render_manifest",
]

_SOURCE_FIELDS = ("sha256", "fps", "fps_fraction", "frame_count", "width", "height", "has_audio", "audio_codec")


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


def render_manifest(
    request: RenderRequest,
    folder: Path,
    writers: Mapping[str, VideoWriter],
    edits: KeyframeEdits,
    contact_at: list[int],
    protected_pixels: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The manifest of a render whose outputs are all closed in ``folder`` (their hashes are read there)."""
    count, names = request.frame_count, request.names
    return {
        "video_id": request.plans.video_id,
        "source": {"path": str(request.video_path), **{k: getattr(request.probe, k) for k in _SOURCE_FIELDS}},
        "inputs": _input_hashes(request),
        "config": _config(request),
        "protect": {
            "given": request.protect is not None,
            "guard_px": request.protect_guard_px,
            "protected_share": protected_pixels / float(count * request.size[0] * request.size[1]),
            "lineage": getattr(request.protect, "lineage", None),
        },
        "outlines": {"product": "green", "protected": "magenta"},
        "seed": request.seed,
        "editor": request.editor.lineage(),
        "propagation": request.propagator.lineage(),
        "keyframes": [int(k) for k in request.keyframes],
        "keyframe_share": len(request.keyframes) / count,
        "edit_calls": edits.calls,
        "edit_calls_without_sharing": len(request.keyframes) * len(names),
        "variants": {name: _variant_entry(request, name, folder, writers[name], edits) for name in names},
        "comparison": {
            "file": "comparison.mp4",
            "sha256": file_sha256(folder / "comparison.mp4"),
            "columns": COMPARISON_COLUMNS,
            "tiles": ["original", *names],
        },
        "contact_sheet": {
            "file": "contact_sheet.png",
            "sha256": file_sha256(folder / "contact_sheet.png"),
            "frames": contact_at,
        },
        "timings_s": timings,
        "extra": dict(request.extra_lineage or {}),
    }


def _input_hashes(request: RenderRequest) -> dict[str, str]:
    masks, attention = request.masks, request.attention
    return {
        "masks_sha256": array_sha256(masks if hasattr(masks, "frame") else np.asarray(masks, dtype=bool)),
        "attention_sha256": array_sha256(
            attention if hasattr(attention, "frame") else np.asarray(attention, dtype=np.float32)
        ),
    }


def _config(request: RenderRequest) -> dict[str, Any]:
    variant_plans = request.variant_plans
    return {
        "keyframe_stride": request.keyframe_stride,
        "encoder": {"codec": "libx264", "crf": VARIANT_CRF, "preset": request.preset, "pix_fmt": "yuv420p"},
        "keyframe_stride_requested": request.requested_stride,
        "edit_every_frame": bool(request.edit_every_frame),
        "keyframe_placement": (
            "every frame edited with its own mask (the editor is a cheap deterministic function of frame, mask "
            "and strength, so flow propagation would only lose the edit)"
            if request.edit_every_frame
            else "first frame of every scene and of every timing window within it, then every stride-th frame"
        ),
        "propagation_ranges": [list(r) for r in request.units],
        "placebo_margin": request.placebo_margin,
        "placebo_margin_px": request.margin_px,
        "variants": [variant_plans[n].spec.to_dict() for n in request.names],
        "scene_ranges": [list(r) for r in request.plans.scene_ranges],
        "strength_map": request.strength_map.to_dict(),
        "allowed_regions": {
            "identity": "whole frame",
            "boost": "whole frame",
            "reduce": "whole frame",
            "placebo": "outside the dilated mask",
        },
        "protected": (
            "none given"
            if request.protect is None
            else "pixels of protect[t] copied from the source frame in every variant after editing"
        ),
    }


def _variant_entry(
    request: RenderRequest, name: str, folder: Path, writer: VideoWriter, edits: KeyframeEdits
) -> dict[str, Any]:
    stats = edits.stats[name]
    return {
        "file": f"{name}.mp4",
        "sha256": file_sha256(folder / f"{name}.mp4"),
        "kind": request.variant_plans[name].spec.kind,
        "frames_written": writer.frames_written,
        "audio_packets_written": writer.audio_packets_written,
        "keyframe_kinds": {k: stats["kind"].count(k) for k in sorted(set(stats["kind"]))},
        "keyframe_mean_strength": float(np.mean(stats["strength"])) if stats["strength"] else 0.0,
        "keyframe_mean_abs_change": float(np.mean(stats["mean_abs_change"])) if stats["mean_abs_change"] else 0.0,
        "edit_limits": edit_limits(edits.edit_reports[name]),
    }
