"""The contract between variant plans and the editors that realise them.

An editor changes one keyframe so that the product's share of attention moves towards the
variant's target. Temporal propagation (optical flow) carries keyframe edits to the frames
between; editors never see those frames. Two implementations exist: ``salience`` (parametric
image operations, no model) and ``controlnet`` (the trained checkpoint on its backbone), both
registered in :data:`EDITORS`; what a caller needs to know about an editor is in the protocol
(``propagation``, ``calibrates``) or in its registry traits (``needs_checkpoint``).

Every edit comes with a report (:meth:`KeyframeEditor.edit_with_report`): the strength asked for
and used, whether a budget capped it, and SSIM / mean CIEDE2000 against the original outside
product and protected regions. An editor that has only ``edit`` gets :class:`UnreportedEdit`
(figures measured on its output) from the protocol's default or, for an editor that does not
subclass the protocol, from the module-level :func:`edit_with_report` ``(editor, request)``, which
callers (the renderer) use for any editor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from align_core.components import Registry

__all__ = [
    "EDITORS",
    "EditReport",
    "KeyframeEditRequest",
    "KeyframeEditor",
    "UnreportedEdit",
    "edit_with_report",
]

EditKind = Literal["identity", "boost", "reduce", "placebo"]
Propagation = Literal["every_frame", "keyframes"]


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
        regions; :mod:`align_core.perception.protect`). ``allowed`` already excludes them and the renderer
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
class KeyframeEditReport(Protocol):
    """What one keyframe edit did, as a flat dict (``kind``, ``requested``, ``used``, ``capped``,
    ``ssim``, ``delta_e``, ``reason``: the keys the renderer's per-window limits read)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EditReport:
    """What one edit did: the strength asked for and used, and the budget figures of the result
    (the salience editor's own report; ``reported`` says the editor measured them itself)."""

    kind: str
    requested: float
    used: float
    capped: bool
    ssim: float
    delta_e: float
    reason: str
    reported: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnreportedEdit(EditReport):
    """The report of an edit by an editor that reports nothing itself (it has only ``edit``).

    The strength used is the one requested (such an editor applies no budget of its own, so it
    is never ``capped``: a window it misses is a failed edit, not ``unreachable``); SSIM and mean
    CIEDE2000 are measured on its output, inside ``allowed``, against the original outside product
    and protected regions (:func:`align_core.measurement.perceptual_budget.measure`), not reported by it.
    """

    reported: bool = False  # False: the editor did not report; these figures were measured after it


def unreported_edit(editor: Any, request: KeyframeEditRequest) -> tuple[np.ndarray, UnreportedEdit]:
    """``editor.edit(request)`` and an :class:`UnreportedEdit` measured on its result."""
    from align_core.measurement.perceptual_budget import measure

    frame = np.asarray(request.frame)
    edited = np.asarray(editor.edit(request))
    name = getattr(editor, "name", type(editor).__name__)
    if edited.shape != frame.shape or edited.dtype != np.uint8:
        raise ValueError(f"editor {name} returned {edited.dtype} {edited.shape} for a uint8 {frame.shape} frame")
    kept = np.where(np.asarray(request.allowed, dtype=bool)[..., None], edited, frame)
    figures = measure(frame, kept, request.mask, request.protect)
    report = UnreportedEdit(
        kind=str(request.kind),
        requested=float(request.strength),
        used=float(request.strength),
        capped=False,
        ssim=figures.ssim,
        delta_e=figures.delta_e,
        reason=f"unreported by editor {name} (it has only edit()): strength used as requested, no budget applied; "
        f"SSIM and mean CIEDE2000 measured on its output",
    )
    return edited, report


def edit_with_report(editor: Any, request: KeyframeEditRequest) -> tuple[np.ndarray, KeyframeEditReport]:
    """Any editor's edited frame and report: its own ``edit_with_report`` when it has one, else
    ``edit`` and an :class:`UnreportedEdit` (:func:`unreported_edit`)."""
    own = getattr(editor, "edit_with_report", None)
    if callable(own):
        return own(request)
    return unreported_edit(editor, request)


@runtime_checkable
class KeyframeEditor(Protocol):
    """Edits one keyframe; deterministic for a given request.

    ``propagation``: ``every_frame`` when an edit is a cheap pure function of (frame, mask,
    strength), so the renderer edits every frame with its own mask; ``keyframes`` when edits
    are costly (a diffusion model) and carried between keyframes by optical flow.
    ``calibrates``: whether its strength is calibrated per video against the measuring
    attention map before rendering (a model-free editor whose effect size is unknown a priori).
    """

    name: str
    propagation: Propagation
    calibrates: bool

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        """Return the edited RGB uint8 ``(H, W, 3)`` frame."""
        ...

    def edit_with_report(self, request: KeyframeEditRequest) -> tuple[np.ndarray, KeyframeEditReport]:
        """The edited frame and what was done (a report with ``to_dict()``).

        Editors that subclass this protocol and define only :meth:`edit` inherit this default:
        :func:`unreported_edit` (their edit, with an :class:`UnreportedEdit`).
        """
        return unreported_edit(self, request)

    def lineage(self) -> dict[str, Any]:
        """Which weights/checkpoint (with sha256) and settings produced the edits."""
        ...


#: Every keyframe editor by name; trait ``needs_checkpoint``: built from the trained ControlNet.
EDITORS: Registry[KeyframeEditor] = Registry("editor")


def _salience_editor(**settings: Any) -> KeyframeEditor:
    from align_core.stimuli.editing.salience import SalienceEditor

    return SalienceEditor(**settings)


def _controlnet_editor(checkpoint: dict[str, Any], device: str = "cpu", **sampling: Any) -> KeyframeEditor:
    """The ControlNet editor on the checkpoint ``controlnet_checkpoint`` recorded (its ``current.json``)."""
    from align_core.stimuli.diffusion import load_backbone
    from align_core.stimuli.editing.controlnet_editor import ControlNetEditor

    backbone = load_backbone(checkpoint["backbone"], kind=checkpoint["backbone_kind"], device=device)
    return ControlNetEditor(backbone, checkpoint["controlnet_dir"], device=device, **sampling)


EDITORS.add("salience", _salience_editor)
EDITORS.add("controlnet", _controlnet_editor, needs_checkpoint=True)
