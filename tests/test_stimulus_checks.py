"""The stimulus checks on the real signing clip: only text stable in baseline is compared, and a
failed check keeps the variant out of experiments with a reason that says where it failed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from align_core.experiments.eligibility import eligibility_table
from align_core.io.video_io import read_frames, write_video
from align_core.measurement.stimulus_checks import (
    UNSTABLE,
    check_stimuli,
    is_stable,
    stability_window,
    stimulus_card_html,
)
from align_core.perception.protect import TextReader

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

OFFER, CHANGED = "LIMITED OFFER $15.99", "LIMITED OFFER $19.99"
CAPTION_BOX = (8, 8, 380, 56)  # x0, y0, x1, y1: the caption drawn below, protected
SWEATSHIRT_BOX = (250, 180, 410, 240)  # the signer's printed "MISFITS", which the protect stage reads as text
OCR_FRAMES = [0, 15, 30, 45, 57]  # where the protect stage's keyframes found text on this clip


def _caption(frames: np.ndarray, text: str) -> np.ndarray:
    out = frames.copy()
    for frame in out:
        cv2.putText(frame, text, (16, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 6, cv2.LINE_AA)
        cv2.putText(frame, text, (16, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _box_mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture(scope="module")
def signer(tmp_path_factory, shared_data: Path):
    """The real ``help`` clip with a price caption, and three variants as the renderer would write them.

    ``graded``: a gentle colour grade outside the protected boxes (protected pixels are the
    source's, as the renderer copies them); ``price_changed``: the caption says $19.99;
    ``sweatshirt_dimmed``: the protected sweatshirt darkened (pixels changed, no stable text changed).
    """
    root = tmp_path_factory.mktemp("signer")
    frames = read_frames(shared_data / "videos" / "help.mkv")
    source = _caption(frames, OFFER)
    protect = _box_mask(source.shape[1:3], CAPTION_BOX, SWEATSHIRT_BOX)
    graded = source.astype(np.float32) * np.array([1.06, 1.0, 0.94], np.float32)
    graded = np.clip(graded, 0, 255).astype(np.uint8)
    graded[:, protect] = source[:, protect]
    dimmed = source.copy()
    x0, y0, x1, y1 = SWEATSHIRT_BOX
    dimmed[:, y0:y1, x0:x1] = (dimmed[:, y0:y1, x0:x1] * 0.8).astype(np.uint8)
    paths = {
        "baseline": write_video(root / "baseline.mp4", source, 30),
        "graded": write_video(root / "graded.mp4", graded, 30),
        "price_changed": write_video(root / "price_changed.mp4", _caption(frames, CHANGED), 30),
        "sweatshirt_dimmed": write_video(root / "sweatshirt_dimmed.mp4", dimmed, 30),
    }
    source_path = write_video(root / "source.mp4", source, 30)
    report = check_stimuli(
        "real-help",
        source_path,
        paths,
        "baseline",
        [protect] * len(source),
        TextReader(threads=1),
        text_frames=OCR_FRAMES,
        scenes=[(0, len(source))],
    )
    return report


def test_only_text_stable_in_baseline_is_compared(signer) -> None:
    ocr = signer.ocr
    caption = ocr[ocr["x1"] < 380]
    sweatshirt = ocr[ocr["x0"] >= 250]
    assert (
        set(caption["frame"]) == set(OCR_FRAMES) and caption["stable"].all()
    )  # an overlay reads the same frame to frame
    # moving hands cover and uncover the sweatshirt: read differently on neighbouring baseline frames
    unstable = sweatshirt[~sweatshirt["stable"]]
    assert unstable["frame"].nunique() >= 2, sweatshirt[["frame", "baseline_reads"]]
    assert unstable["cer"].isna().all() and unstable["distance"].isna().all()
    # and those reads flip in a variant whose protected pixels are the source's: comparing them
    # (as the check used to) would fail the graded variant although no text was edited
    graded = unstable[unstable["variant"] == "graded"]
    assert (graded["variant_text"].str.replace(" ", "") != graded["reference_text"].str.replace(" ", "")).any(), graded
    info = signer.information.set_index("variant")
    assert info.loc["graded", "passed"] and info.loc["graded", "mean_cer"] == 0.0, info.loc["graded", "reason"]
    assert UNSTABLE in info.loc["graded", "reason"] and info.loc["graded", "unstable_boxes"] > 0
    assert signer.fidelity.set_index("variant").loc["graded", "passed"]


def test_a_changed_overlay_still_fails_and_says_where(signer) -> None:
    info = signer.information.set_index("variant")
    assert not info.loc["price_changed", "passed"] and info.loc["price_changed", "mean_cer"] > 0.02
    assert "$15.99" in info.loc["price_changed", "where"] and "$19.99" in info.loc["price_changed", "where"]
    fidelity = signer.fidelity.set_index("variant")
    assert not fidelity.loc["price_changed", "passed"]
    assert (
        "protected region (8, 8, 380, 56)" in fidelity.loc["price_changed", "where"]
    )  # the caption's box, not the sweatshirt's
    assert (
        not fidelity.loc["sweatshirt_dimmed", "passed"]
        and "protected region (250, 180, 410, 240)" in fidelity.loc["sweatshirt_dimmed", "where"]
    )
    assert info.loc["sweatshirt_dimmed", "passed"]  # its stable text (the caption) reads the same
    html = stimulus_card_html("real-help", signer)
    assert UNSTABLE in html and "MIS" in html and 'class="fail"' in html


def test_stimulus_failures_make_variants_ineligible(signer) -> None:
    verdicts = pd.DataFrame(
        {
            "variant": ["baseline", "graded", "price_changed", "sweatshirt_dimmed"],
            "status": ["passed", "passed", "passed", "failed"],
            "reason": ["", "", "", "independent majority disagrees"],
        }
    )
    table = eligibility_table("real-help", verdicts, {}, signer.failures()).set_index("variant")
    assert (
        table.loc["baseline", "eligible"] and table.loc["graded", "eligible"]
    )  # unstable sweatshirt text does not exclude
    assert pd.isna(table.loc["graded", "exclusion_reason"]) and table.loc["graded", "stimulus_status"] == "passed"
    price = table.loc["price_changed"]
    assert not price["eligible"] and price["manipulation_status"] == "passed" and price["stimulus_status"] == "failed"
    assert "protected text changed (OCR): frame 0, text box" in price["exclusion_reason"]
    assert "$15.99' -> '" in price["exclusion_reason"] and "$19.99'" in price["exclusion_reason"]
    assert "protected region changed (PSNR vs baseline): frame" in price["exclusion_reason"]
    dimmed = table.loc["sweatshirt_dimmed", "exclusion_reason"]
    assert dimmed.startswith(
        "manipulation check failed: independent majority disagrees; protected region changed (PSNR"
    )
    assert "OCR" not in dimmed
    unrun = eligibility_table("real-help", verdicts, {}).set_index("variant")  # stimulus checks not run: as before
    assert unrun.loc["price_changed", "eligible"] and (unrun["stimulus_status"] == "not run").all()


def test_stability_rule() -> None:
    units = [(0, 10), (10, 12)]
    assert stability_window(5, units, 3) == [3, 4, 5, 6, 7]
    assert stability_window(10, units, 3) == [10, 11]  # never across a scene cut
    assert is_stable({3: "SALE", 4: "SA LE", 5: "SALE", 6: "X", 7: "SALE"}, 5, 3)  # 3..5 agree (spaces aside)
    assert not is_stable({3: "A", 4: "B", 5: "A", 6: "B", 7: "A"}, 5, 3)
    assert is_stable({5: "", 6: "NEW", 7: "NEW", 8: "NEW"}, 6, 3)  # a caption that appears at the OCR frame
    assert is_stable({10: "X", 11: "X"}, 10, 3)  # a two-frame scene: both frames must agree
    assert not is_stable({12: "X"}, 12, 3)  # one frame alone confirms nothing
    assert is_stable({12: "X"}, 12, 1)  # stable_reads 1: no confirmation asked, every read compared
