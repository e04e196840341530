"""Every editor's edit comes with a report: its own, or one measured on its output (``edit_with_report``)."""

from __future__ import annotations

import numpy as np

from align_core.io.video_io import read_frame
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest, UnreportedEdit, edit_with_report
from align_core.stimuli.editing.manifest import edit_limits
from align_core.stimuli.editing.salience import SalienceEditor


class EditOnly:
    """A third-party editor with only ``edit``: the salience editor's edit, without its report."""

    name = "edit-only"
    propagation = "every_frame"
    calibrates = False

    def __init__(self) -> None:
        self._inner = SalienceEditor()

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        return self._inner.edit(request)

    def lineage(self) -> dict:
        return {"wraps": self._inner.lineage()}


class Subclassed(KeyframeEditor):
    """An editor that subclasses the protocol and defines only ``edit``: inherits the default report."""

    name = "subclassed"
    propagation = "every_frame"
    calibrates = False

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        return SalienceEditor().edit(request)

    def lineage(self) -> dict:
        return {}


def _request(shared_data, kind: str = "boost") -> KeyframeEditRequest:
    frame = read_frame(shared_data / "videos" / "intel_bottle-detection.mp4", 30)[::4, ::4].copy()
    height, width = frame.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = True
    protect = np.zeros_like(mask)
    protect[:10, :40] = True
    attention = np.full((height, width), 0.2, np.float32)
    return KeyframeEditRequest(
        frame=frame,
        mask=mask,
        attention=attention,
        target_control=np.stack([mask.astype(np.float32), attention * mask]),
        original_alignment=0.2,
        target_alignment=0.3,
        allowed=~protect,
        kind=kind,
        strength=0.8,
        seed=0,
        protect=protect,
    )


def test_an_edit_only_editor_gets_a_measured_unreported_report(shared_data) -> None:
    request = _request(shared_data)
    editor = EditOnly()
    assert not isinstance(editor, KeyframeEditor)  # the protocol asks for edit_with_report; the helper covers it
    edited, report = edit_with_report(editor, request)
    assert np.array_equal(edited, editor.edit(request))
    assert isinstance(report, UnreportedEdit) and not report.reported and "unreported" in report.reason
    figures = report.to_dict()
    assert figures["requested"] == figures["used"] == 0.8 and figures["capped"] is False
    assert 0.0 < figures["ssim"] < 1.0 and figures["delta_e"] > 0.0  # measured: the boost changed the background
    # the renderer's per-window limits read it like the salience editor's own report
    limits = edit_limits([{"frame": 0, "window": "early", **figures}])
    assert limits["early"]["frames_edited"] == 1 and limits["early"]["min_ssim"] == figures["ssim"]


def test_own_reports_and_the_protocol_default(shared_data) -> None:
    request = _request(shared_data)
    salience = SalienceEditor()
    edited, report = edit_with_report(salience, request)  # its own report, untouched
    assert type(report).__name__ == "EditReport" and np.array_equal(edited, salience.edit(request))
    subclassed = Subclassed()
    assert isinstance(subclassed, KeyframeEditor) and isinstance(salience, KeyframeEditor)
    frame, inherited = subclassed.edit_with_report(request)
    assert isinstance(inherited, UnreportedEdit) and np.array_equal(frame, edited)
    same, identity = edit_with_report(subclassed, _request(shared_data, "identity"))
    assert (
        identity.to_dict()["kind"] == "identity"
        and abs(identity.ssim - 1.0) < 1e-9
        and np.array_equal(same, request.frame)
    )
