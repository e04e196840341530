"""Attention maps: geometry, the meaning-map procedure, scorers, the video driver and storage."""

from __future__ import annotations

import cProfile
import math
import pstats
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from align_core.perception.attention import (
    AttentionConfig,
    AttentionMaps,
    ViewingGeometry,
    attention_map,
    compute_attention_maps,
    disk_means_at,
    keyframes_for_scenes,
    load_attention_maps,
    make_patch_scorer,
    patch_grid,
    postprocess_map,
    save_attention_maps,
    splat_patch_scores,
)
from align_core.perception.attention.maps import raw_meaning_map
from align_core.perception.attention.scorers import CUES, feature_maps


class _CentrePatchScorer:
    """Rates the patch nearest a point 1 and every other patch 0 (a hand-made case)."""

    name = "centre_patch"
    scorer_id = "centre_patch-test"

    def __init__(self, point_xy: tuple[float, float]) -> None:
        self.point = np.asarray(point_xy, dtype=np.float64)

    def metadata(self) -> dict[str, str]:
        return {"scorer": self.name}

    def score_patches(self, frame, centres, radius_px, *, frame_index=None):  # noqa: ANN001, ANN201
        scores = np.zeros(len(centres))
        scores[int(np.argmin(np.linalg.norm(centres - self.point, axis=1)))] = 1.0
        return scores


def _textured_frame(height: int = 96, width: int = 160) -> np.ndarray:
    """A flat grey frame with one high-contrast checkered square right of centre."""
    frame = np.full((height, width, 3), 128, dtype=np.uint8)
    y0, x0 = height // 2 - 12, int(width * 0.7) - 12
    checks = (np.indices((24, 24)).sum(axis=0) // 3 % 2 * 255).astype(np.uint8)
    frame[y0 : y0 + 24, x0 : x0 + 24] = checks[..., None]
    return frame


# ---------------------------------------------------------------- geometry and grid


def test_patch_radius_matches_hand_computation() -> None:
    geometry = ViewingGeometry(frame_width_px=512, display_width_cm=6.8, viewing_distance_cm=30.0)
    px_per_cm = 512 / 6.8
    assert geometry.patch_radius_px(3.0) == pytest.approx(30.0 * math.tan(math.radians(1.5)) * px_per_cm)
    assert geometry.patch_radius_px(7.0) == pytest.approx(30.0 * math.tan(math.radians(3.5)) * px_per_cm)
    assert geometry.patch_radius_px(3.0) == pytest.approx(59.15, abs=0.01)  # 0.7856 cm * 75.29 px/cm
    assert geometry.pixels_per_degree() == pytest.approx(2 * 30.0 * math.tan(math.radians(0.5)) * px_per_cm)
    # Same display at half the pixels: half the radius (degrees, not a fixed fraction of pixels).
    assert geometry.for_width(256).patch_radius_px(3.0) == pytest.approx(geometry.patch_radius_px(3.0) / 2)
    assert geometry.display_width_deg() == pytest.approx(math.degrees(2 * math.atan(3.4 / 30.0)))
    with pytest.raises(ValueError):
        geometry.patch_radius_px(0.0)


def test_grid_spacing_and_overlap_cover_every_pixel() -> None:
    height, width, radius = 120, 200, 20.0
    centres = patch_grid(height, width, radius, step_frac=0.75)
    xs, ys = np.unique(centres[:, 0]), np.unique(centres[:, 1])
    assert np.allclose(np.diff(xs), 15.0) and np.allclose(np.diff(ys), 15.0)
    # Coverage count per pixel from the disk-splatting path: at least 1 everywhere,
    # about pi / 0.75**2 = 5.6 in the interior.
    ones = np.ones(len(centres))
    counts = cv2.filter2D(
        np.bincount((np.rint(centres[:, 1]) * width + np.rint(centres[:, 0])).astype(int), minlength=height * width)
        .reshape(height, width)
        .astype(np.float64),
        -1,
        (np.add.outer(np.arange(-20, 21) ** 2, np.arange(-20, 21) ** 2) <= 400).astype(np.float64),
        borderType=cv2.BORDER_CONSTANT,
    )
    assert counts.min() >= 1 - 1e-6
    interior = counts[40:80, 60:140]
    assert interior.mean() == pytest.approx(math.pi / 0.75**2, rel=0.1)
    assert np.allclose(splat_patch_scores(ones, centres, radius, (height, width)), 1.0)


def test_splat_is_per_pixel_mean_of_covering_patches() -> None:
    centres = np.array([[10.0, 10.0], [16.0, 10.0]])
    out = splat_patch_scores(np.array([1.0, 3.0]), centres, 5.0, (21, 30))
    assert out[10, 8] == pytest.approx(1.0)  # only the first disk
    assert out[10, 13] == pytest.approx(2.0)  # both disks
    assert out[10, 20] == pytest.approx(3.0)  # only the second
    assert out[0, 0] == 0.0  # no disk


def test_disk_means_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((30, 40)).astype(np.float32)
    centres = np.array([[5.0, 5.0], [20.0, 15.0], [39.0, 29.0]])
    got = disk_means_at(values, centres, 6.0)
    rows, cols = np.indices(values.shape)
    for (x, y), mean in zip(centres, got, strict=True):
        inside = (cols - x) ** 2 + (rows - y) ** 2 <= 36
        assert mean == pytest.approx(values[inside].mean(), rel=1e-5)


# ---------------------------------------------------------------- procedure


def test_postprocess_normalises_and_applies_gamma() -> None:
    config = AttentionConfig(smoothing_sigma_at_576=0.0, gamma=3.0)
    out = postprocess_map(np.array([[2.0, 3.0, 4.0]]), config)
    assert out[0].tolist() == pytest.approx([0.0, 0.125, 1.0])
    assert np.all(postprocess_map(np.full((4, 4), 7.0), config) == 1.0)  # no contrast: uniform


def test_single_bright_patch_map_is_normalised_with_gamma() -> None:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    scorer = _CentrePatchScorer((110.0, 45.0))
    gamma1 = attention_map(frame, scorer, AttentionConfig(gamma=1.0))
    gamma3 = attention_map(frame, scorer, AttentionConfig(gamma=3.0))
    assert gamma3.dtype == np.float32 and gamma3.shape == (90, 160)
    assert gamma3.max() == pytest.approx(1.0) and gamma3.min() == pytest.approx(0.0)
    np.testing.assert_allclose(gamma3, gamma1**3, atol=1e-5)
    # The peak lies where the chosen patches (1, 3 and 7 deg) overlap: within a 3-degree radius.
    radius3 = ViewingGeometry(160).patch_radius_px(3.0)
    peak_row, peak_col = np.unravel_index(np.argmax(gamma3), gamma3.shape)
    assert math.hypot(peak_col - 110, peak_row - 45) <= radius3


def test_scales_are_averaged_with_their_weights() -> None:
    frame = np.zeros((90, 160, 3), dtype=np.uint8)
    scorer = _CentrePatchScorer((110.0, 45.0))
    weighted = raw_meaning_map(
        frame, scorer, AttentionConfig(scales_deg=(1.0, 3.0, 7.0), scale_weights=(2.0, 1.0, 0.25))
    )
    singles = [raw_meaning_map(frame, scorer, AttentionConfig(scales_deg=(deg,))) for deg in (1.0, 3.0, 7.0)]
    np.testing.assert_allclose(weighted, (2.0 * singles[0] + singles[1] + 0.25 * singles[2]) / 3.25, atol=1e-6)
    # A zero weight drops its scale (the scorer is not even asked).
    np.testing.assert_allclose(
        raw_meaning_map(frame, scorer, AttentionConfig(scales_deg=(1.0, 7.0), scale_weights=(1.0, 0.0))),
        singles[0],
        atol=1e-6,
    )


def test_scale_weights_default_resolve_and_validate() -> None:
    assert AttentionConfig().scales_deg == (1.0, 3.0, 7.0) and AttentionConfig().scale_weights == (2.0, 1.0, 0.25)
    assert AttentionConfig(scales_deg=(3.0, 7.0)).scale_weights == (1.0, 1.0)  # other scales: equal weights
    # A config stored before scale weights existed (version 1: 3 and 7 degrees, gamma 3) means equal weights.
    old = AttentionConfig.from_dict({"scales_deg": [3.0, 7.0], "gamma": 3.0})
    assert old.scale_weights == (1.0, 1.0) and old.gamma == 3.0
    assert AttentionConfig.from_dict(AttentionConfig().to_dict()) == AttentionConfig()
    with pytest.raises(ValueError, match="one weight per scale"):
        AttentionConfig(scales_deg=(3.0, 7.0), scale_weights=(1.0,))
    with pytest.raises(ValueError, match="non-negative"):
        AttentionConfig(scales_deg=(3.0, 7.0), scale_weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="positive sum"):
        AttentionConfig(scales_deg=(3.0,), scale_weights=(0.0,))


def test_feature_richness_computes_only_its_cues_and_mixes_them_unchanged() -> None:
    frame = cv2.resize(_textured_frame(), (320, 192), interpolation=cv2.INTER_NEAREST)
    scorer = make_patch_scorer("feature_richness")
    assert scorer.scorer_id.startswith("feature_richness-v5(") and scorer.scorer_id.endswith(",motion=3)")
    assert ",surround=8," in scorer.scorer_id
    every = feature_maps(frame)
    w = scorer.weights
    expected = sum(getattr(w, name) * every[name] for name in CUES)
    np.testing.assert_allclose(scorer.content_map(frame), expected, atol=1e-6)
    assert list(feature_maps(frame, ("text", "edges"))) == ["text", "edges"]
    np.testing.assert_array_equal(feature_maps(frame, ("local_colour",))["local_colour"], every["local_colour"])
    with pytest.raises(ValueError, match="unknown feature_richness cues"):
        feature_maps(frame, ("faces",))


def test_working_resolution_map_is_frame_sized_and_deterministic() -> None:
    frame = cv2.resize(_textured_frame(), (640, 384), interpolation=cv2.INTER_NEAREST)
    scorer = make_patch_scorer("feature_richness")
    config = AttentionConfig(max_long_side=320)
    first = attention_map(frame, scorer, config)
    assert first.shape == (384, 640) and first.min() == 0.0 and first.max() == 1.0
    np.testing.assert_array_equal(first, attention_map(frame.copy(), make_patch_scorer("feature_richness"), config))
    # The checkered square (right of centre) draws more attention than the mirrored flat grey.
    assert first[192, int(640 * 0.7)] > first[192, int(640 * 0.3)]


def test_feature_richness_metadata_is_honest() -> None:
    meta = make_patch_scorer("feature_richness").metadata()
    assert meta["trained"] is False and "proxy" in meta["what_it_is"]
    with pytest.raises(ValueError, match="unknown patch scorer"):
        make_patch_scorer("nope")


# ---------------------------------------------------------------- llava (tiny, offline)


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from align_core.perception.attention.llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava", seed=0)


def test_tiny_llava_scores_batched_deterministic_and_labelled(tiny_llava_dir: Path) -> None:
    scorer = make_patch_scorer("llava", model_path=tiny_llava_dir, batch_size=3)
    frame = _textured_frame(48, 80)
    centres = patch_grid(48, 80, 10.0, 1.2)
    assert len(centres) > 3  # more than one batch
    ratings = scorer.score_patches(frame, centres, 10.0)
    assert ratings.shape == (len(centres),)
    assert np.all((ratings >= 1.0) & (ratings <= 6.0))
    np.testing.assert_array_equal(ratings, scorer.score_patches(frame, centres, 10.0))
    one_batch = make_patch_scorer("llava", model_path=tiny_llava_dir, batch_size=len(centres))
    np.testing.assert_allclose(one_batch.score_patches(frame, centres, 10.0), ratings, atol=1e-5)

    meta = scorer.metadata()
    assert meta["trained"] is False and "untrained" in meta["provenance"]
    assert meta["weights"] == str(tiny_llava_dir.resolve())
    assert len(set(meta["rating_token_ids"])) == 6

    amap = attention_map(frame, scorer, AttentionConfig(grid_step_frac=1.4))
    assert amap.shape == (48, 80) and amap.min() == 0.0 and amap.max() == 1.0


def test_llava_scorer_rejects_missing_directory(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="not a local model directory"):
        make_patch_scorer("llava", model_path=tmp_path / "absent")


# ---------------------------------------------------------------- provided maps


def test_provided_maps_round_trip_directory_and_stack(tmp_path: Path) -> None:
    height, width = 60, 100
    rows, cols = np.indices((height, width))
    blobs = [np.exp(-((cols - cx) ** 2 + (rows - 30) ** 2) / (2 * 6.0**2)) for cx in (25, 75)]
    directory = tmp_path / "heat"
    directory.mkdir()
    cv2.imwrite(str(directory / "000000.png"), np.rint(blobs[0] * 255).astype(np.uint8))
    np.save(directory / "1.npy", blobs[1].astype(np.float32))
    np.savez_compressed(tmp_path / "stack.npz", maps=np.stack(blobs).astype(np.float32))

    frame = np.zeros((height, width, 3), dtype=np.uint8)
    config = AttentionConfig(scales_deg=(3.0,), gamma=1.0)
    from_dir = make_patch_scorer("provided", source=directory)
    from_stack = make_patch_scorer("provided", source=tmp_path / "stack.npz")
    for index, cx in enumerate((25, 75)):
        a = attention_map(frame, from_dir, config, frame_index=index)
        b = attention_map(frame, from_stack, config, frame_index=index)
        np.testing.assert_allclose(a, b, atol=0.02)  # PNG 8-bit vs float
        assert abs(int(np.argmax(a.max(axis=0))) - cx) <= 3
    with pytest.raises(ValueError, match="no map file for frame 5"):
        attention_map(frame, from_dir, config, frame_index=5)
    with pytest.raises(ValueError, match="frame index"):
        attention_map(frame, from_dir, config)


# ---------------------------------------------------------------- carrying and storage


def _constant_maps(values: list[float], keys: list[int], scenes: list[int], frames: int, carry: str = "linear"):
    return AttentionMaps(
        keyframe_maps=np.stack([np.full((4, 6), v, dtype=np.float32) for v in values]),
        keyframe_indices=np.asarray(keys),
        scene_start_frames=np.asarray(scenes),
        frame_count=frames,
        scorer_id="test",
        config=AttentionConfig().to_dict(),
        carry=carry,
    )


def test_keyframes_restart_at_every_scene() -> None:
    assert keyframes_for_scenes([0, 10], 20, 6).tolist() == [0, 6, 10, 16]
    with pytest.raises(ValueError, match="outside the video"):
        keyframes_for_scenes([0, 25], 20, 6)
    with pytest.raises(ValueError, match="not 0"):
        keyframes_for_scenes([3], 20, 6)


def test_carry_interpolates_within_scene_and_never_across_a_cut() -> None:
    maps = _constant_maps([0.0, 0.6, 1.0, 0.2], [0, 6, 10, 16], [0, 10], 20)
    dense = maps.maps[:, 0, 0]
    assert dense[3] == pytest.approx(0.3)  # halfway between 0.0 and 0.6
    assert dense[6] == pytest.approx(0.6)
    assert np.allclose(dense[7:10], 0.6)  # held: never blended towards the next scene's 1.0
    assert dense[10] == pytest.approx(1.0)
    assert dense[13] == pytest.approx(0.6)  # 1.0 -> 0.2 halfway
    assert np.allclose(dense[16:], 0.2)
    nearest = _constant_maps([0.0, 0.6, 1.0, 0.2], [0, 6, 10, 16], [0, 10], 20, carry="nearest").maps[:, 0, 0]
    assert nearest[2] == 0.0 and nearest[4] == pytest.approx(0.6) and nearest[9] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="first frame must be a keyframe"):
        _constant_maps([0.0, 0.6], [0, 12], [0, 10], 20)


def test_save_load_round_trip_within_quantisation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    smooth = [cv2.GaussianBlur(rng.random((72, 128)).astype(np.float32), (0, 0), 10) for _ in range(3)]
    keymaps = np.stack([(m - m.min()) / (m.max() - m.min()) for m in smooth])
    maps = AttentionMaps(
        keyframe_maps=keymaps,
        keyframe_indices=np.array([0, 6, 9]),
        scene_start_frames=np.array([0, 9]),
        frame_count=14,
        scorer_id="feature_richness-test",
        config=AttentionConfig().to_dict(),
        scorer_metadata={"weights": "none"},
        video="synthetic",
    )
    exact = load_attention_maps(save_attention_maps(tmp_path / "full.npz", maps, storage_scale=1.0))
    assert np.abs(exact.maps - maps.maps).max() <= 0.5 / 255 + 1e-6
    small = load_attention_maps(save_attention_maps(tmp_path / "half.npz", maps))
    assert np.abs(small.maps - maps.maps).max() <= 3.0 / 255
    assert small.keyframe_indices.tolist() == [0, 6, 9] and small.scene_start_frames.tolist() == [0, 9]
    assert small.scorer_id == maps.scorer_id and small.scorer_metadata == {"weights": "none"}
    assert AttentionConfig.from_dict(small.config) == AttentionConfig()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_attention_maps(tmp_path / "bad.npz")


# ---------------------------------------------------------------- real clip


def test_real_clip_help_mkv(shared_data: Path, tmp_path: Path) -> None:
    video = shared_data / "videos" / "help.mkv"
    config = AttentionConfig(keyframe_stride=8)
    # The carry rule alone (motion=0); each frame's own motion cue: tests/test_attention_motion.py.
    maps = compute_attention_maps(video, [0, 30], make_patch_scorer("feature_richness", motion=0.0), config)
    assert maps.shape == (58, 480, 640)
    assert maps.keyframe_indices.tolist() == [0, 8, 16, 24, 30, 38, 46, 54]
    assert maps.scorer_id.startswith("feature_richness") and maps.config["keyframe_stride"] == 8
    # Keyframes are kept at the analysis resolution (long side 512), where each is min-max normalised;
    # the frame-size map is their bilinear upsampling, so it stays inside [0, 1].
    assert maps.keyframe_maps.shape[1:] == (384, 512)
    for index in (0, 30):
        key = maps.analysis_map_at(index)
        assert key.dtype == np.float32 and key.min() == 0.0 and key.max() == 1.0
        full = maps.map_at(index)
        assert full.shape == (480, 640) and full.min() >= 0.0 and full.max() <= 1.0 and full.max() > 0.95
    # Frames 25-29 hold keyframe 24: nothing of scene 2 leaks back across the cut at 30.
    for index in range(25, 30):
        np.testing.assert_array_equal(maps.map_at(index), maps.map_at(24))
    path = save_attention_maps(tmp_path / "help.npz", maps)
    assert path.stat().st_size < 100_000
    loaded = load_attention_maps(path)
    assert np.abs(loaded.map_at(40) - maps.map_at(40)).max() <= 3.0 / 255
    with pytest.raises(ValueError, match="help.mkv"):
        compute_attention_maps(video, [0, 58], make_patch_scorer("feature_richness"), config)


def test_stored_scorer_cards_belong_to_the_current_scorers_and_hold_the_issue_claim() -> None:
    """The cards (bench/bench_scorer_cards.py) are regenerated whenever a scorer changes: a card
    whose scorer_id is not today's default would describe maps the platform no longer makes."""
    from align_core.perception.attention.independent import SaliencyModelScorer, scorer_cards

    cards = scorer_cards()
    assert cards["tuned_on"] == "001-150" and cards["reported_on"] == "151-300" and cards["images"] == 150
    scorers = cards["scorers"]
    assert scorers["feature_richness"]["scorer_id"] == make_patch_scorer("feature_richness").scorer_id
    for name in ("itti_koch", "image_signature", "spectral_residual"):
        assert scorers[name]["scorer_id"] == SaliencyModelScorer(name).scorer_id
    ours, plain = scorers["feature_richness"]["content_only"], scorers["spectral_residual"]["content_only"]
    assert ours["NSS"] > plain["NSS"] and ours["CC"] > plain["CC"]


def test_stored_card_content_part_matches_the_best_independent_content_part() -> None:
    """Issue 25: the default scorer's still-image part (centre prior off) scores at least as well
    as the best independent verifier's content part on NUS 151-300, on NSS and on CC (the stored
    cards; bench/bench_scorer_cards.py regenerates them), and the verifiers on the card are the
    ones the variant stage votes with."""
    from align_core.perception.attention.independent import MODELS, scorer_cards
    from align_core.stages.variants import VariantQualitySettings

    scorers = scorer_cards()["scorers"]
    verifiers = VariantQualitySettings().independent_scorers
    assert sorted(verifiers) == sorted(MODELS) and len(verifiers) == 3
    ours = scorers["feature_richness"]["content_only"]
    for metric in ("NSS", "CC"):
        best = max(scorers[name]["content_only"][metric] for name in verifiers)
        assert ours[metric] >= best, f"{metric}: default content part {ours[metric]:.3f} < best independent {best:.3f}"


def _called_code(call: Callable[[], object]) -> set[tuple[str, str]]:
    """(file name, function name) of every Python function ``call`` runs."""
    profile = cProfile.Profile()
    profile.runcall(call)
    return {(Path(file).name, name) for (file, _line, name) in pstats.Stats(profile).stats}  # type: ignore[attr-defined]


def test_independent_verifiers_share_no_cue_code_with_the_default() -> None:
    """The verifiers must fail differently from the calibrating scorer: the default's maps run no
    verifier code (not independent.py, not the shared spectral residual) and no verifier runs the
    default's cues (scorers.py, surroundedness.py)."""
    from align_core.perception.attention.independent import MODELS, SaliencyModelScorer

    frame = cv2.resize(_textured_frame(), (320, 192), interpolation=cv2.INTER_NEAREST)
    default_code = _called_code(lambda: attention_map(frame, make_patch_scorer("feature_richness")))
    assert ("surroundedness.py", "surroundedness_map") in default_code  # the profile sees the cues
    assert not {name for name in default_code if name[0] == "independent.py"}
    assert ("base.py", "spectral_residual") not in default_code
    for model in MODELS:
        verifier_code = _called_code(lambda model=model: SaliencyModelScorer(model, centre=0.4)(frame))
        assert ("independent.py", MODELS[model][0].__name__) in verifier_code
        assert not {name for name in verifier_code if name[0] in ("scorers.py", "surroundedness.py", "motion.py")}


def test_surroundedness_marks_enclosed_figures_not_regions_touching_the_border() -> None:
    """A dark disk inside a light frame is surrounded; a dark band touching the border is not."""
    from align_core.perception.attention.surroundedness import surroundedness_map

    frame = np.full((120, 200, 3), 220, np.uint8)
    cv2.circle(frame, (140, 60), 18, (30, 30, 30), -1)
    frame[:, :25] = 30  # a band as dark as the disk, but on the border
    cue = surroundedness_map(frame)
    assert cue.shape == (120, 200) and cue.dtype == np.float32
    assert cue[60, 140] > 0 and cue[60, 10] == 0.0
    assert not surroundedness_map(np.full((64, 64, 3), 90, np.uint8)).any()
    with pytest.raises(ValueError, match="side"):
        surroundedness_map(frame, side=8)


def test_keyframes_kept_in_stored_form_save_the_same_file(shared_data: Path, tmp_path: Path) -> None:
    """The attention stage keeps keyframes as stored (memory flat in length): the same maps on disk as before."""
    video = shared_data / "videos" / "help.mkv"
    config = AttentionConfig(keyframe_stride=8)
    scorer = make_patch_scorer("feature_richness")
    kept = compute_attention_maps(video, [0], scorer, config, frame_limit=20, storage_scale=0.5)
    full = compute_attention_maps(video, [0], scorer, config, frame_limit=20)
    assert kept.keyframe_maps.shape[1:] == (192, 256) and full.keyframe_maps.shape[1:] == (384, 512)
    old = load_attention_maps(save_attention_maps(tmp_path / "old.npz", full))
    new = load_attention_maps(save_attention_maps(tmp_path / "new.npz", kept, storage_scale=1.0))
    np.testing.assert_array_equal(new.keyframe_maps, old.keyframe_maps)
    np.testing.assert_array_equal(new.keyframe_maps, kept.keyframe_maps)  # in memory = what a later stage loads
    np.testing.assert_array_equal(new.map_at(13), old.map_at(13))
