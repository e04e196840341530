"""The edits of one render: each variant's request at a keyframe, each distinct request edited once.

Variants often ask for the same edit at a frame (early_boost and full_boost on an early
keyframe; every out-of-window keyframe is the identity edit), so edits are cached per frame by
request key ``(kind, strength)``. Frames are visited in order and every cache here keeps only a
few frames (:class:`FrameInputs`) or is emptied by the renderer once a frame is written
(:meth:`KeyframeEdits.forget`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from align_core.measurement.perceptual_budget import downsample_factor
from align_core.stimuli.editing.base import KeyframeEditRequest, edit_with_report
from align_core.stimuli.editing.regions import allowed_region, guarded_protect, restore
from align_core.stimuli.editing.render_request import RenderRequest

__all__ = [
    "DeferredArray",
    "FrameInputs",
    "KeyframeEdits",
    "RequestKey",
]

#: ``(kind, strength)``: requests with equal keys get the same edit.
RequestKey = tuple[Any, ...]


class DeferredArray:
    """An array computed on first use: what an editor may read but need not (the salience editor reads
    the attention map, for its distractor weight, and never the target control).

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
class FrameRegions:
    """One frame's product mask, guarded protected region and allowed regions (by ``whole``/``placebo``)."""

    mask: np.ndarray
    protect: np.ndarray | None
    allowed: dict[str, np.ndarray] = field(default_factory=dict)


class FrameInputs:
    """Per-frame masks and regions, computed once for all variants (a short window of frames kept)."""

    def __init__(self, request: RenderRequest):
        self._request = request
        self._protect: dict[int, np.ndarray | None] = {}
        self._frames: dict[int, FrameRegions] = {}

    def protect_at(self, index: int) -> np.ndarray | None:
        """The pixels copied from the source at frame ``index`` (``protect`` dilated by the guard)."""
        request = self._request
        if request.protect is None:
            return None
        if index not in self._protect:
            if len(self._protect) > 2 * request.keyframe_stride + 4:  # frames are visited in order: keep a window
                for old in sorted(self._protect)[: len(self._protect) // 2]:
                    del self._protect[old]
            region = np.asarray(request.protect[index], dtype=bool)
            if region.shape != request.size:
                raise ValueError(
                    f"video {request.video_path}: protect mask of frame {index} is {region.shape}, "
                    f"expected ({request.size[0]}, {request.size[1]})"
                )
            self._protect[index] = guarded_protect(region, request.protect_guard_px)
        return self._protect[index]

    def at(self, index: int) -> FrameRegions:
        """The frame's mask, protected region and allowed regions."""
        if index not in self._frames:
            while len(self._frames) > 2:  # frames are visited in order
                del self._frames[min(self._frames)]
            mask = np.asarray(self._request.masks[index], dtype=bool)
            self._frames[index] = FrameRegions(mask=mask, protect=self.protect_at(index))
        return self._frames[index]

    def allowed_at(self, index: int, kind: str) -> np.ndarray:
        """Pixels a ``kind`` edit may change at frame ``index``: its allowed region minus the protected pixels."""
        entry = self.at(index)
        key = "placebo" if kind == "placebo" else "whole"
        if key not in entry.allowed:
            allowed = allowed_region(kind, entry.mask, self._request.margin_px)
            if entry.protect is not None:
                allowed = allowed & ~entry.protect
            entry.allowed[key] = allowed
        return entry.allowed[key]


class KeyframeEdits:
    """Builds each variant's edit request, runs each distinct one once and records what was done.

    ``stats`` (per variant: strength, kind and mean absolute change per recorded keyframe) and
    ``edit_reports`` (the editor's own reports) feed the manifest; ``calls`` counts real edits.
    """

    def __init__(self, request: RenderRequest, inputs: FrameInputs, timings: dict[str, float]):
        self._request, self._inputs, self._timings = request, inputs, timings
        self._variant_plans = request.variant_plans
        self._edits: dict[int, dict[RequestKey, np.ndarray]] = {}
        self._reports: dict[int, dict[RequestKey, dict[str, Any]]] = {}
        self._changes: dict[int, dict[RequestKey, float]] = {}
        self._sample_step = downsample_factor(request.size)
        self.calls = 0
        self.stats: dict[str, dict[str, list[Any]]] = {
            n: {"strength": [], "mean_abs_change": [], "kind": []} for n in request.names
        }
        self.edit_reports: dict[str, list[dict[str, Any]]] = {n: [] for n in request.names}

    def request_for(self, name: str, index: int, frame: np.ndarray) -> tuple[RequestKey, KeyframeEditRequest]:
        """Variant ``name``'s edit request at frame ``index`` and its sharing key."""
        request = self._request
        plan = self._variant_plans[name]
        kind = plan.kind_at(index)
        original = float(request.plans.original_alignment[index])
        target = float(plan.frame_target[index])
        if kind == "placebo":
            strength = request.strength_map.strength_for("boost", original, min(1.0, plan.spec.factor * original))
        else:
            strength = request.strength_map.strength_for(kind, original, target)
        strength = round(strength, 4)
        if strength == 0.0 and kind != "identity":
            kind = "identity"
        regions = self._inputs.at(index)
        mask, attention = regions.mask, request.attention
        allowed = self._inputs.allowed_at(index, kind)
        height, width = request.size
        edit = KeyframeEditRequest(
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
            seed=request.seed,
            protect=regions.protect,
        )
        return (kind, strength), edit

    def prefetch(self, index: int, frame: np.ndarray, pool: ThreadPoolExecutor) -> None:
        """Edit the frame's distinct requests side by side (editors that allow concurrent edits)."""
        todo: dict[RequestKey, KeyframeEditRequest] = {}
        done = self._edits.get(index, {})
        for name in self._request.names:
            key, request = self.request_for(name, index, frame)
            if key not in done and key not in todo:
                todo[key] = request
        futures = {key: pool.submit(self._run, request) for key, request in todo.items()}
        for key, future in futures.items():
            self._store(index, frame, key, todo[key], *future.result())

    def edited(self, name: str, index: int, frame: np.ndarray, record: bool) -> tuple[RequestKey, np.ndarray]:
        """Variant ``name``'s edited frame ``index`` (edited now unless an equal request was).

        ``record``: count it in ``stats`` and ``edit_reports`` (each keyframe is recorded once).
        """
        key, request = self.request_for(name, index, frame)
        per_key = self._edits.setdefault(index, {})
        reports = self._reports.setdefault(index, {})
        if key not in per_key:
            self._store(index, frame, key, request, *self._run(request))
        if record:
            self._record(name, index, key, request, per_key[key], reports)
        return key, per_key[key]

    def forget(self, index: int) -> None:
        """Drop frame ``index``'s edits once every variant has it."""
        self._edits.pop(index, None)
        self._reports.pop(index, None)
        self._changes.pop(index, None)

    def forget_before(self, stop: int) -> None:
        """Drop the edits of every frame before ``stop`` (a finished segment)."""
        for index in list(self._edits):
            if index < stop:
                del self._edits[index]
                self._reports.pop(index, None)
                self._changes.pop(index, None)

    def _record(
        self,
        name: str,
        index: int,
        key: RequestKey,
        request: KeyframeEditRequest,
        edited: np.ndarray,
        reports: dict[RequestKey, dict[str, Any]],
    ) -> None:
        stats = self.stats[name]
        stats["strength"].append(request.strength)
        stats["kind"].append(request.kind)
        changes = self._changes.setdefault(index, {})
        if key not in changes:  # on every k-th pixel of a large frame (k as the budget's downsampling)
            step = self._sample_step
            frame = request.frame
            changes[key] = float(np.abs(edited[::step, ::step].astype(np.int16) - frame[::step, ::step]).mean())
        stats["mean_abs_change"].append(changes[key])
        if key in reports:
            at_max = bool(request.strength >= 1.0 and request.kind in ("boost", "reduce"))
            self.edit_reports[name].append({**reports[key], "at_max_strength": at_max})

    def _run(self, request: KeyframeEditRequest) -> tuple[np.ndarray, Any, float]:
        t0 = time.perf_counter()
        edited, report = edit_with_report(self._request.editor, request)  # an edit-only editor's report is measured
        return np.asarray(edited), report, time.perf_counter() - t0

    def _store(
        self,
        index: int,
        frame: np.ndarray,
        key: RequestKey,
        request: KeyframeEditRequest,
        edited: np.ndarray,
        report: Any,
        seconds: float,
    ) -> None:
        self._timings["edit_s"] += seconds
        if edited.shape != frame.shape or edited.dtype != np.uint8:
            raise ValueError(
                f"video {self._request.video_path}: editor {self._request.editor.name} returned "
                f"{edited.dtype} {edited.shape} for keyframe {index}"
            )
        self._reports.setdefault(index, {})[key] = {
            "frame": int(index),
            "window": str(self._request.plans.frame_windows[index]),
            **report.to_dict(),
        }
        # Pixels outside ``allowed``: only the placebo's region is smaller than the frame (the
        # protected pixels are copied from the source for every variant when the frame is written).
        self._edits.setdefault(index, {})[key] = (
            restore(edited.copy(), frame, ~request.allowed) if request.kind == "placebo" else edited
        )
        self.calls += 1
