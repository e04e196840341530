"""The salience editor: bounded parametric edits that move attention, within the perceptual budget."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from align_core.io.video_io import read_frame
from align_core.measurement.perceptual_budget import PerceptualBudget, measure
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.stimuli.editing.salience import SalienceEditor


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
        total += cv2.GaussianBlur(
            (np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2).astype(np.float32), (0, 0), 2.5
        )
    total = np.clip(total - np.median(total), 0, None)
    ys, xs = np.mgrid[0 : total.shape[0], 0 : total.shape[1]]
    prior = np.exp(
        -(
            ((xs - total.shape[1] / 2) / (0.3 * total.shape[1])) ** 2
            + ((ys - total.shape[0] / 2) / (0.3 * total.shape[0])) ** 2
        )
        / 2
    )
    total = total / (total.max() + 1e-12) + 0.1 * prior
    out = cv2.resize(total.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out / out.max(), 0, 1).astype(np.float32)


def alignment(frame: np.ndarray, mask: np.ndarray) -> float:
    attention = spectral_residual_attention(frame)
    return float((attention * mask).sum() / attention.sum())


def synthetic_frame(height: int = 160, width: int = 96, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A colourful textured background with a textured orange product disc."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.random((height // 8, width // 8, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    fine = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 0.8)
    frame = np.clip(255 * (0.55 * base + 0.45 * fine), 0, 255)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = (yy - 0.55 * height) ** 2 + (xx - 0.45 * width) ** 2 < (0.17 * width) ** 2
    product = np.array([230, 120, 30], np.float32) * (0.8 + 0.4 * fine[..., :1])
    frame[mask] = np.clip(product[mask], 0, 255)
    return frame.astype(np.uint8), mask


def request(
    frame: np.ndarray,
    mask: np.ndarray,
    kind: str,
    strength: float,
    allowed: np.ndarray | None = None,
    protect: np.ndarray | None = None,
) -> KeyframeEditRequest:
    attention = spectral_residual_attention(frame)
    return KeyframeEditRequest(
        frame=frame,
        mask=mask,
        attention=attention,
        target_control=np.stack([mask.astype(np.float32), attention * mask]),
        original_alignment=0.0,
        target_alignment=0.0,
        allowed=np.ones(mask.shape, bool) if allowed is None else allowed,
        kind=kind,
        strength=strength,
        seed=0,
        protect=protect,  # type: ignore[arg-type]
    )


def test_implements_the_keyframe_editor_protocol_and_records_its_budget() -> None:
    editor = SalienceEditor()
    assert isinstance(editor, KeyframeEditor)
    lineage = editor.lineage()
    assert lineage["editor"] == "salience" and lineage["weights"] is None
    assert lineage["perceptual_budget"] == PerceptualBudget().to_dict()  # every limit, mean, local and product
    assert lineage["perceptual_budget"]["min_ssim"] == 0.9 and lineage["perceptual_budget"]["max_delta_e"] == 6.0
    assert not any("ring" in key for key in lineage["settings"])  # no geometry placed for a scorer
    assert SalienceEditor(min_ssim=0.95).lineage()["perceptual_budget"]["min_ssim"] == 0.95


def test_boost_raises_and_reduce_lowers_the_product_share_monotonically() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    before = alignment(frame, mask)
    boosts = [alignment(editor.edit(request(frame, mask, "boost", s)), mask) for s in (0.1, 0.2, 0.4)]
    reduces = [alignment(editor.edit(request(frame, mask, "reduce", s)), mask) for s in (0.1, 0.2, 0.4)]
    assert before < boosts[0] < boosts[1] < boosts[2], (before, boosts)
    assert before > reduces[0] > reduces[2], (before, reduces)


def test_boost_and_reduction_on_a_real_frame(shared_data) -> None:
    frame = read_frame(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", 70)
    mask = np.zeros(frame.shape[:2], bool)
    mask[140:200, 330:450] = True  # hand-drawn box around the cauliflower
    editor = SalienceEditor()
    before = alignment(frame, mask)
    boosted, report = editor.edit_with_report(request(frame, mask, "boost", 1.0))
    assert alignment(boosted, mask) > 1.1 * before
    assert alignment(editor.edit(request(frame, mask, "reduce", 1.0)), mask) < before
    assert measure(frame, boosted, mask).within(PerceptualBudget())
    assert report.used <= report.requested


@pytest.mark.parametrize("kind", ["boost", "reduce", "placebo"])
def test_every_edit_keeps_the_budget_and_a_capped_edit_is_never_bigger(kind: str) -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    asked = request(frame, mask, kind, 1.0)
    edited, report = editor.edit_with_report(asked)
    distractor = editor.distractor_weight(asked.attention, mask)  # the background weighted by attention (v5)
    figures = measure(frame, edited, mask)
    assert figures.within(PerceptualBudget()), figures
    assert report.ssim == pytest.approx(figures.ssim, abs=1e-6) and report.delta_e == pytest.approx(
        figures.delta_e, abs=1e-4
    )
    if kind != "placebo":
        assert report.capped and 0 < report.used < 1.0  # this textured frame cannot take a full-strength edit
        image = frame.astype(np.float32) / 255
        # the product at the request and the background capped, or (the product budget binds) both capped
        joint = report.reason.startswith("product and background")
        product = report.used if joint else 1.0
        at_used = editor._render(image, kind, mask, product, report.used, distractor)
        np.testing.assert_array_equal(np.rint(at_used * 255).astype(np.uint8), edited)  # exactly the strength reported
        bigger_strength = min(1.0, report.used * 1.3)
        bigger = editor._render(image, kind, mask, bigger_strength if joint else 1.0, bigger_strength, distractor)
        assert not measure(frame, np.rint(bigger * 255).astype(np.uint8), mask).within(PerceptualBudget(), 0.1)
    small, small_report = editor.edit_with_report(request(frame, mask, kind, 0.05))
    assert not small_report.capped and small_report.used == pytest.approx(0.05)


def test_identity_is_the_same_path_at_zero_strength_and_returns_the_frame() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    np.testing.assert_array_equal(editor.edit(request(frame, mask, "identity", 0.7)), frame)
    np.testing.assert_array_equal(editor.edit(request(frame, mask, "boost", 0.0)), frame)


def test_placebo_is_a_matched_colour_grade_outside_the_product() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    edited, report = editor.edit_with_report(request(frame, mask, "placebo", 0.6))
    np.testing.assert_array_equal(edited[mask], frame[mask])
    ring = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)
    np.testing.assert_array_equal(edited[ring], frame[ring])
    lightness = lambda image: cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[..., 0]  # noqa: E731
    assert np.abs(lightness(edited) - lightness(frame)).mean() < 1.0  # lightness (structure) kept: a colour grade
    boosted, boost_report = editor.edit_with_report(request(frame, mask, "boost", 0.6))
    placebo_magnitude = measure(frame, edited, mask).delta_e
    boost_magnitude = measure(frame, boosted, mask).delta_e
    # the same perceptual magnitude, as far as the local budget allows (a uniform grade of this saturated frame
    # would put more than 2 % of its pixels over 10 CIEDE2000): within the check's matched range
    assert placebo_magnitude == pytest.approx(boost_magnitude, rel=0.2)
    assert measure(frame, edited, mask).within(PerceptualBudget())
    assert report.used == pytest.approx(boost_report.used)
    assert abs(alignment(edited, mask) - alignment(frame, mask)) < 0.03


def test_protected_pixels_are_never_edited() -> None:
    frame, mask = synthetic_frame()
    protect = np.zeros(mask.shape, bool)
    protect[5:30, 10:80] = True  # e.g. a price tag
    protect[80:95, 30:50] = True  # overlapping the product
    editor = SalienceEditor()
    for kind in ("boost", "reduce", "placebo"):
        edited = editor.edit(request(frame, mask, kind, 1.0, protect=protect))
        np.testing.assert_array_equal(edited[protect], frame[protect])
        assert np.abs(edited[~protect].astype(int) - frame[~protect]).mean() > 0.5, kind
        assert measure(frame, edited, mask, protect).within(PerceptualBudget())


def test_pixels_outside_allowed_are_the_original_and_empty_mask_is_untouched() -> None:
    frame, mask = synthetic_frame()
    allowed = np.zeros(mask.shape, bool)
    allowed[:80] = True
    edited = SalienceEditor().edit(request(frame, mask, "boost", 1.0, allowed))
    np.testing.assert_array_equal(edited[~allowed], frame[~allowed])
    assert np.abs(edited[allowed].astype(int) - frame[allowed]).mean() > 2
    empty = np.zeros(mask.shape, bool)
    for kind in ("boost", "reduce", "placebo"):
        np.testing.assert_array_equal(SalienceEditor().edit(request(frame, empty, kind, 1.0)), frame)


def test_deterministic_and_validates_input() -> None:
    frame, mask = synthetic_frame(512, 288)
    editor = SalienceEditor()
    req = request(frame, mask, "boost", 0.8)
    first = editor.edit(req)
    np.testing.assert_array_equal(first, SalienceEditor().edit(req))
    bad = KeyframeEditRequest(**{**req.__dict__, "mask": mask[:10]})
    with pytest.raises(ValueError, match="mask"):
        editor.edit(bad)
    with pytest.raises(ValueError, match="protect"):
        editor.edit(KeyframeEditRequest(**{**req.__dict__, "protect": mask[:10]}))


def test_reduce_mutes_the_product_and_recolours_it_towards_its_surroundings() -> None:
    frame, mask = synthetic_frame()
    editor = SalienceEditor()
    edited = editor.edit(request(frame, mask, "reduce", 1.0)).astype(np.float32)
    original = frame.astype(np.float32)
    near = (~mask) & (cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
    gap_before = np.abs(original[mask].mean(axis=0) - original[near].mean(axis=0)).sum()
    gap_after = np.abs(edited[mask].mean(axis=0) - edited[near].mean(axis=0)).sum()
    assert gap_after < 0.8 * gap_before  # the product's colour moved towards the background around it

    def chroma(image: np.ndarray) -> float:
        return float((image[mask] - image[mask].mean(axis=1, keepdims=True)).std())

    assert chroma(edited) < 0.8 * chroma(original)  # and lost colourfulness
