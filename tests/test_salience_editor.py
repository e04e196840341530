"""The model-free salience editor moves a weight-free attention map's share on the product."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from align_core.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.editing.salience import SalienceEditor
from align_core.video_io import read_frame


def spectral_residual_attention(frame: np.ndarray) -> np.ndarray:
    """Weight-free test scorer: spectral residual (Hou & Zhang 2007) on Lab channels + a centre prior."""
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (64, max(8, round(64 * height / width))), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    total = np.zeros(lab.shape[:2], np.float32)
    for c in range(3):
        spectrum = np.fft.fft2(lab[..., c])
        log_amplitude = np.log(np.abs(spectrum) + 1e-6)
        residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
        total += cv2.GaussianBlur((np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2).astype(np.float32), (0, 0), 2.5)
    total = np.clip(total - np.median(total), 0, None)
    ys, xs = np.mgrid[0 : total.shape[0], 0 : total.shape[1]]
    prior = np.exp(-(((xs - total.shape[1] / 2) / (0.3 * total.shape[1])) ** 2 + ((ys - total.shape[0] / 2) / (0.3 * total.shape[0])) ** 2) / 2)
    total = total / (total.max() + 1e-12) + 0.1 * prior
    out = cv2.resize(total.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out / out.max(), 0, 1).astype(np.float32)


def alignment(frame: np.ndarray, mask: np.ndarray) -> float:
    attention = spectral_residual_attention(frame)
    return float((attention * mask).sum() / attention.sum())


def synthetic_frame(height: int = 160, width: int = 96, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A colourful textured background with a textured orange product disc."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((height // 8, width // 8, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 0.8)
    frame = np.clip(255 * (0.55 * base + 0.45 * fine), 0, 255)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = (yy - 0.55 * height) ** 2 + (xx - 0.45 * width) ** 2 < (0.17 * width) ** 2
    product = np.array([230, 120, 30], np.float32) * (0.8 + 0.4 * fine[..., :1])
    frame[mask] = np.clip(product[mask], 0, 255)
    return frame.astype(np.uint8), mask


def request(frame: np.ndarray, mask: np.ndarray, kind: str, strength: float, allowed: np.ndarray | None = None) -> KeyframeEditRequest:
    attention = spectral_residual_attention(frame)
    return KeyframeEditRequest(
        frame=frame, mask=mask, attention=attention,
        target_control=np.stack([mask.astype(np.float32), attention * mask]),
        original_alignment=0.0, target_alignment=0.0,
        allowed=np.ones(mask.shape, bool) if allowed is None else allowed,
        kind=kind, strength=strength, seed=0,  # type: ignore[arg-type]
    )


def test_implements_the_keyframe_editor_protocol() -> None:
    editor = SalienceEditor()
    assert isinstance(editor, KeyframeEditor)
    lineage = editor.lineage()
    assert lineage["editor"] == "salience" and lineage["weights"] is None


def test_boost_raises_and_reduce_lowers_the_product_share_monotonically() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    before = alignment(frame, mask)
    boosts = [alignment(editor.edit(request(frame, mask, "boost", s)), mask) for s in (0.25, 0.5, 1.0)]
    reduces = [alignment(editor.edit(request(frame, mask, "reduce", s)), mask) for s in (0.25, 0.5, 1.0)]
    assert before < boosts[0] < boosts[1] < boosts[2], (before, boosts)
    assert boosts[2] > 1.5 * before
    assert before > reduces[0] > reduces[2], (before, reduces)


def test_boost_and_reduction_on_a_real_frame(shared_data) -> None:
    frame = read_frame(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", 70)
    mask = np.zeros(frame.shape[:2], bool)
    mask[140:200, 330:450] = True  # hand-drawn box around the cauliflower
    editor = SalienceEditor()
    before = alignment(frame, mask)
    assert alignment(editor.edit(request(frame, mask, "boost", 1.0)), mask) > 2 * before
    assert alignment(editor.edit(request(frame, mask, "reduce", 1.0)), mask) < before


def test_identity_is_the_same_path_at_zero_strength_and_returns_the_frame() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    np.testing.assert_array_equal(editor.edit(request(frame, mask, "identity", 0.7)), frame)
    np.testing.assert_array_equal(editor.edit(request(frame, mask, "boost", 0.0)), frame)


def test_placebo_is_confined_outside_the_mask_and_keeps_luma() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    edited = editor.edit(request(frame, mask, "placebo", 0.6))
    np.testing.assert_array_equal(edited[mask], frame[mask])
    ring = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)
    np.testing.assert_array_equal(edited[ring], frame[ring])
    luma = lambda image: image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    assert np.abs(luma(edited) - luma(frame)).max() <= 1.5
    change = np.abs(edited.astype(int) - frame).mean()
    boost_change = np.abs(editor.edit(request(frame, mask, "boost", 0.6)).astype(int) - frame).mean()
    assert change > 0.3 * boost_change  # a real edit of comparable magnitude, not a no-op
    assert abs(alignment(edited, mask) - alignment(frame, mask)) < 0.03


def test_pixels_outside_allowed_are_the_original_and_empty_mask_is_untouched() -> None:
    frame, mask = synthetic_frame()
    allowed = np.zeros(mask.shape, bool)
    allowed[:80] = True
    edited = SalienceEditor().edit(request(frame, mask, "boost", 1.0, allowed))
    np.testing.assert_array_equal(edited[~allowed], frame[~allowed])
    assert np.abs(edited[allowed].astype(int) - frame[allowed]).mean() > 5
    empty = np.zeros(mask.shape, bool)
    for kind in ("boost", "reduce", "placebo"):
        np.testing.assert_array_equal(SalienceEditor().edit(request(frame, empty, kind, 1.0)), frame)


def test_deterministic_fast_and_validates_input() -> None:
    frame, mask = synthetic_frame(512, 288)
    editor = SalienceEditor()
    req = request(frame, mask, "boost", 0.8)
    start = time.perf_counter()
    first = editor.edit(req)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(first, editor.edit(req))
    bad = KeyframeEditRequest(**{**req.__dict__, "mask": mask[:10]})
    with pytest.raises(ValueError, match="mask"):
        editor.edit(bad)


def test_reduce_camouflages_the_product_into_its_surroundings() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    edited = editor.edit(request(frame, mask, "reduce", 1.0)).astype(np.float32)
    original = frame.astype(np.float32)
    near = (~mask) & (cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
    gap_before = np.abs(original[mask].mean(axis=0) - original[near].mean(axis=0)).sum()
    gap_after = np.abs(edited[mask].mean(axis=0) - edited[near].mean(axis=0)).sum()
    assert gap_after < 0.5 * gap_before  # the product's colour moved towards the background around it
    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0

    def fine_detail(image: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(image, cv2.CV_32F))[core].mean())

    assert fine_detail(edited) < 0.5 * fine_detail(original)  # its fine texture faded
