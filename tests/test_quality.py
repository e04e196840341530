"""Quality metrics: SSIM against the formula by hand, PSNR, warping error, per-variant table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_propagation import textured_pan

from align_core.measurement.quality import psnr, sequence_warping_error, ssim, ssim_map
from align_core.stimuli.editing.propagation import FlowPropagator

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


def test_ssim_of_two_constant_images_matches_the_formula() -> None:
    a = np.full((20, 20), 100.0)
    b = np.full((20, 20), 150.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)  # variances and covariance are 0
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_at_one_pixel_matches_a_direct_gaussian_window_sum() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (21, 21)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    px, py = x[5:16, 5:16], y[5:16, 5:16]  # the window centred on pixel (10, 10)
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
    cov = (w * px * py).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim_map(x, y)[10, 10] == pytest.approx(expected, rel=1e-6)


def test_psnr_by_hand_and_regions() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 10  # MSE over the 48 values = 3*100/48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (300 / 48)))
    region = np.zeros((4, 4), bool)
    region[2:, 2:] = True
    assert psnr(a, b, region) == math.inf
    assert math.isnan(psnr(a, b, np.zeros((4, 4), bool)))


def test_warping_error_is_small_on_a_pan_and_catches_flicker() -> None:
    frames = textured_pan(6, 96, 128)
    propagator = FlowPropagator()
    own = sequence_warping_error(list(frames), propagator=propagator)
    flicker = frames.astype(np.int16)
    flicker[1::2] += 12
    flickering = sequence_warping_error(
        list(np.clip(flicker, 0, 255).astype(np.uint8)), list(frames), propagator=propagator
    )
    assert own < 1.0
    assert flickering > own + 8


def test_per_variant_quality_table_on_rendered_variants(tmp_path) -> None:
    from test_render import FPS, SCENES, box_attention, synthetic_ad, write_source

    from align_core.measurement.quality import evaluate_variants
    from align_core.stimuli.editing.render import render_variants
    from align_core.stimuli.editing.salience import SalienceEditor
    from align_core.stimuli.plans import plan_variants

    frames, masks = synthetic_ad(seed=2)
    source = write_source(tmp_path / "ad_3.mp4", frames)
    attention = box_attention(frames, masks)
    plans = plan_variants("ad_3", (attention * masks).sum(axis=(1, 2)) / attention.sum(axis=(1, 2)), FPS, SCENES)
    result = render_variants(source, plans, masks, attention, SalienceEditor(), tmp_path / "out", keyframe_stride=4)

    def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(float) - b).mean() / 255)

    table = evaluate_variants(
        source,
        result.variant_paths,
        plans,
        masks,
        lpips_fn=mean_abs_difference,
        lpips_backbone_state="test stand-in: mean absolute difference, not LPIPS",
        lpips_every=6,
    )
    rows = table.set_index("variant")
    assert set(rows.index) == set(plans.plans)
    assert rows.loc["placebo", "protected_share"] > masks.mean()  # the dilated mask
    assert rows.loc["placebo", "psnr_protected"] > 30 and rows.loc["placebo", "ssim_protected"] > 0.9
    assert math.isnan(rows.loc["full_boost", "psnr_protected"])  # allowed everywhere: nothing protected
    assert rows.loc["baseline", "psnr_full"] > rows.loc["full_boost", "psnr_full"]
    # Edits must not make the video swim: warping error close to the original's own.
    # (the reduction sharpens the background, so its own texture adds ~3 levels of error.)
    assert (rows["warping_error_delta"].abs() < 5.0).all(), rows["warping_error_delta"]
    assert rows.loc["baseline", "lpips_frames"] == 4 and rows.loc["baseline", "lpips_backbone_state"].startswith(
        "test stand-in"
    )
    with pytest.raises(ValueError, match="backbone"):
        evaluate_variants(source, result.variant_paths, plans, masks, lpips_fn=mean_abs_difference)
    assert (rows["frames_measured"] == 24).all() and (rows["analysis_factor"] == 1).all()
    assert rows.loc["baseline", "sample_rule"] == "every frame (24)"

    # Identity at small size: an analysis side the frame already fits is its full resolution, bit for bit.
    same = evaluate_variants(source, result.variant_paths, plans, masks, analysis_max_side=max(masks.shape[1:]))
    metrics = [
        "psnr_full",
        "ssim_full",
        "psnr_protected",
        "ssim_protected",
        "psnr_product",
        "psnr_background",
        "warping_error_edited",
        "warping_error_original",
        "protected_share",
        "frames_measured",
        "warp_pairs",
    ]
    pd.testing.assert_frame_equal(same[metrics], table[metrics])
    assert (same["analysis_factor"] == 1).all()

    # A sample at half resolution: the stated frames, warp pairs only within a scene, the size recorded.
    sample = [0, 5, 9, 10, 17, 23]  # scenes start at 0 and 10: four frames have a same-scene predecessor
    half = evaluate_variants(source, result.variant_paths, plans, masks, analysis_max_side=80, frames=sample).set_index(
        "variant"
    )
    assert (
        (half["analysis_factor"] == 2).all()
        and (half["analysis_height"] == 80).all()
        and (half["analysis_width"] == 48).all()
    )
    assert (half["frames_measured"] == 6).all() and (half["warp_pairs"] == 4).all() and (half["frames"] == 24).all()
    assert half["sample_rule"].str.startswith("6 of 24 frames").all()
    assert half.loc["baseline", "psnr_full"] > half.loc["full_boost", "psnr_full"]
    assert math.isnan(half.loc["full_boost", "psnr_protected"]) and half.loc["placebo", "psnr_protected"] > 30
    assert (half["ssim_full"] - rows["ssim_full"]).abs().max() < 0.05
    assert (half["warping_error_delta"].abs() < 5.0).all()


def test_quality_and_check_memory_do_not_grow_with_video_length(tmp_path) -> None:
    """Peak traced memory of one streamed pass (quality riding on the check's decode) at 24 and 96 frames."""
    import tracemalloc

    from test_salience_editor import spectral_residual_attention

    from align_core.io.video_io import write_video
    from align_core.measurement.frame_sampling import FrameSample
    from align_core.measurement.manipulation import measure_rendered
    from align_core.measurement.quality import QualityPass
    from align_core.perception.attention.independent import SaliencyModelScorer
    from align_core.stimuli.plans import plan_variants

    def peak_for(count: int) -> int:
        frames = textured_pan(count, 96, 160, dx=2, seed=count)
        yy, xx = np.mgrid[0:96, 0:160]
        masks = np.stack([(yy - 48) ** 2 + (xx - 40 - t % 60) ** 2 < 18**2 for t in range(count)])
        scenes = [(0, count // 2), (count // 2, count)]
        plans = plan_variants(f"len{count}", np.full(count, 0.2), 12, scenes)
        source = write_video(tmp_path / f"src{count}.mp4", frames, 12)
        shifted = np.clip(frames.astype(np.int16) + np.where(masks[..., None], 12, 0), 0, 255).astype(np.uint8)
        paths = {
            "baseline": write_video(tmp_path / f"base{count}.mp4", frames, 12),
            "full_boost": write_video(tmp_path / f"boost{count}.mp4", shifted, 12),
        }
        sample = FrameSample.build(count, plans.scene_ranges, plans.frame_windows, 12)
        scorers = {"spectral": spectral_residual_attention, "itti": SaliencyModelScorer("itti_koch")}
        tracemalloc.start()
        quality = QualityPass(source, paths, plans, masks, analysis_max_side=80, frames=sample.frames)
        measure_rendered(
            source,
            paths,
            "baseline",
            masks,
            scorers,
            frames=sample.frames,
            budget_frames=sample.frames,
            analysis_max_side=80,
            on_frame=quality.add,
            on_frame_frames=quality.needed,
        )
        table = quality.table()
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert (table["frames_measured"] == len(sample.frames)).all() and len(sample.frames) < count
        return peak

    short, long = peak_for(24), peak_for(96)
    assert long < 1.25 * short + 256 * 1024, (short, long)


@pytest.mark.filterwarnings("ignore:random-alexnet")
def test_lpips_compares_frames_at_most_256_px_long_and_says_so() -> None:
    import cv2

    from align_core.stages.variants import lpips_frame_distance

    distance, state = lpips_frame_distance(None)
    rng = np.random.default_rng(4)
    a = cv2.GaussianBlur(rng.integers(0, 256, (512, 288, 3), dtype=np.uint8), (0, 0), 2)
    b = np.clip(a.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    small = lambda x: cv2.resize(x, (144, 256), interpolation=cv2.INTER_AREA)  # noqa: E731
    assert distance(a, a) == 0.0 and distance(a, b) > 0
    assert distance(a, b) == pytest.approx(distance(small(a), small(b)), abs=1e-6)
    assert "at most 256 px" in state and "NOT perceptual" in state
