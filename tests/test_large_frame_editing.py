"""Editing at real size: the salience editor's large-frame path keeps the budget, the protected
pixels and the matched placebo; the shortcuts it takes equal what they replace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from align_core.measurement.perceptual_budget import PerceptualBudget, downsample_factor, measure
from align_core.stimuli.editing.base import KeyframeEditRequest
from align_core.stimuli.editing.keyframe_edits import DeferredArray
from align_core.stimuli.editing.regions import bounding_box, dilate_ellipse, restore
from align_core.stimuli.editing.render_request import auto_encoder_preset
from align_core.stimuli.editing.salience import SalienceEditor, fast_gaussian_blur

# 768x1024: large enough for the large-frame path (the budget measures at a third of the size)
HEIGHT, WIDTH = 1024, 768


def _frame(seed: int = 0, shift: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    canvas = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT + 16, WIDTH, 3), dtype=np.uint8), (0, 0), 3)
    canvas = np.clip(canvas.astype(np.int16) * 3 - 250, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(canvas[shift : shift + HEIGHT])


def _request(
    frame: np.ndarray, kind: str, mask: np.ndarray, protect: np.ndarray, allowed: np.ndarray | None = None
) -> KeyframeEditRequest:
    return KeyframeEditRequest(
        frame=frame,
        mask=mask,
        attention=DeferredArray((HEIGHT, WIDTH), np.float32, lambda: np.zeros((HEIGHT, WIDTH), np.float32)),  # type: ignore[arg-type]
        target_control=DeferredArray((2, HEIGHT, WIDTH), np.float32, lambda: np.zeros((2, HEIGHT, WIDTH), np.float32)),  # type: ignore[arg-type]
        original_alignment=0.2,
        target_alignment=0.3,
        allowed=~protect if allowed is None else allowed,
        kind=kind,
        strength=0.9,
        seed=0,
        protect=protect,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def regions() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[380:700, 200:520] = True
    protect = np.zeros((HEIGHT, WIDTH), bool)
    protect[60:140, 80:700] = True  # a caption
    return mask, protect


def test_large_frames_take_the_large_frame_path():
    assert downsample_factor((HEIGHT, WIDTH)) > 1


@pytest.mark.parametrize("kind", ["boost", "reduce", "placebo"])
def test_large_frame_edits_keep_the_budget_and_the_protected_pixels(regions, kind):
    mask, protect = regions
    editor = SalienceEditor()
    budget = PerceptualBudget()
    for shift in (0, 4, 8):  # consecutive frames: the second and third start from the first's strength
        frame = _frame(shift=shift)
        out, report = editor.edit_with_report(_request(frame, kind, mask, protect))
        figures = measure(frame, out, mask, protect)
        assert figures.ssim >= budget.min_ssim and figures.delta_e <= budget.max_delta_e, (kind, shift, figures)
        assert np.array_equal(out[protect], frame[protect])
        assert report.delta_e > 0.5  # it did edit, up to the budget
        assert abs(report.delta_e - figures.delta_e) < 0.05 * max(
            1.0, figures.delta_e
        )  # what it reports is what it wrote


def test_large_frame_placebo_matches_the_boost_magnitude(regions):
    mask, protect = regions
    frame = _frame()
    boost = measure(frame, SalienceEditor().edit(_request(frame, "boost", mask, protect)), mask, protect)
    placebo = measure(frame, SalienceEditor().edit(_request(frame, "placebo", mask, protect)), mask, protect)
    assert placebo.delta_e == pytest.approx(boost.delta_e, rel=0.15)


def test_pyramid_blur_matches_a_full_resolution_gaussian():
    image = cv2.GaussianBlur(np.random.default_rng(1).random((600, 400, 3), dtype=np.float32), (0, 0), 2.0)
    exact = cv2.GaussianBlur(image, (0, 0), sigmaX=20.0, sigmaY=20.0, borderType=cv2.BORDER_REFLECT)
    fast = fast_gaussian_blur(image, 20.0)
    inner = (slice(60, -60), slice(60, -60))  # borders are handled differently by the two paths
    assert np.abs(fast[inner] - exact[inner]).max() < 1.0 / 255


def test_dilate_ellipse_equals_a_whole_frame_dilation():
    mask = np.zeros((200, 160), bool)
    mask[0:30, 120:160] = True  # touches two borders
    mask[90:110, 40:70] = True
    for radius in (0, 1, 5, 17):
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        expected = cv2.dilate(mask.astype(np.uint8), kernel) > 0
        assert np.array_equal(dilate_ellipse(mask, radius), expected), radius
    assert not dilate_ellipse(np.zeros((10, 10), bool), 3).any()
    assert bounding_box(np.zeros((4, 4), bool)) is None


def test_deferred_array_computes_once_and_only_when_read():
    calls = []
    deferred = DeferredArray((2, 3), np.float32, lambda: calls.append(1) or np.ones((2, 3)))
    assert deferred.shape == (2, 3) and not calls
    assert np.asarray(deferred).dtype == np.float32 and np.asarray(deferred, np.float64).sum() == 6
    assert deferred[1, 2] == 1 and len(calls) == 1


def test_encoder_preset_follows_the_frame_size():
    assert auto_encoder_preset(288, 512) == "veryfast"
    assert auto_encoder_preset(1080, 1920) == "superfast"


def test_restore_equals_a_whole_frame_where():
    rng = np.random.default_rng(2)
    out, source = rng.integers(0, 256, (2, 40, 30, 3), dtype=np.uint8)
    region = np.zeros((40, 30), bool)
    region[5:9, 20:27] = True
    region[30, 2] = True
    expected = np.where(region[..., None], source, out)
    assert np.array_equal(restore(out.copy(), source, region), expected)
    assert np.array_equal(restore(out.copy(), source, np.zeros((40, 30), bool)), out)
