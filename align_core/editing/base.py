"""The contract between variant plans and the editors that realise them.

An editor changes one keyframe so that the product's share of attention moves towards the
variant's target. Temporal propagation (optical flow) carries keyframe edits to the frames
between; editors never see those frames. Two implementations exist: ``salience`` (parametric
image operations, no model) and ``controlnet`` (the trained checkpoint on its backbone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

EditKind = Literal["identity", "boost", "reduce", "placebo"]


@dataclass(frozen=True)
class KeyframeEditRequest:
    """Everything an editor may use to edit one keyframe.

    Arrays share the frame's height and width.

    frame: RGB uint8 ``(H, W, 3)``, the original frame.
    mask: bool ``(H, W)``, the keyword (product) mask M_t.
    attention: float32 ``(H, W)`` in [0, 1], the attention map A_t of the original frame.
    target_control: float32 ``(2, H, W)``, the variant's control C'_t = [M_t, S'_t].
    original_alignment / target_alignment: a_t of the original and the variant's target.
    allowed: bool ``(H, W)``, the pixels this variant may change (everything else is copied
        from the original after editing).
    kind: what the variant asks for at this frame: identity (baseline; the frame still goes
        through the editor so it carries the same artefacts), boost, reduce, or placebo (an
        edit of matched magnitude outside the mask that must not move alignment).
    strength: magnitude in [0, 1] derived from the target change (placebo gets the magnitude
        of the matched boost).
    seed: fixed per video, so variants differ only in their control.
    protect: bool ``(H, W)`` or None, pixels no variant may edit (text overlays, faces, user
        regions; :mod:`align_core.protect`). ``allowed`` already excludes them and the renderer
        copies them from the source after editing (``out[protect] = source[protect]``); an
        editor may use them to keep its edit (and its perceptual budget) away from them.
    """

    frame: np.ndarray
    mask: np.ndarray
    attention: np.ndarray
    target_control: np.ndarray
    original_alignment: float
    target_alignment: float
    allowed: np.ndarray
    kind: EditKind
    strength: float
    seed: int
    protect: np.ndarray | None = None


@runtime_checkable
class KeyframeEditor(Protocol):
    """Edits one keyframe; deterministic for a given request."""

    name: str

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        """Return the edited RGB uint8 ``(H, W, 3)`` frame."""
        ...

    def lineage(self) -> dict[str, Any]:
        """Which weights/checkpoint (with sha256) and settings produced the edits."""
        ...
