"""Rendering: playable H.264 variants at the source's size and rate, audio kept, lineage recorded."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from align_core.io.video_io import probe_video, read_frames, write_video
from align_core.stimuli.editing.render import render_variants
from align_core.stimuli.editing.render_request import StrengthMap
from align_core.stimuli.editing.salience import SalienceEditor
from align_core.stimuli.plans import plan_variants

HEIGHT, WIDTH, FPS, FRAMES = 160, 96, 12, 24
SCENES = [(0, 10), (10, 24)]


def synthetic_ad(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two scenes of a panning textured background with a moving textured product disc."""
    frames, masks = [], []
    rng = np.random.default_rng(seed)
    for scene, (start, stop) in enumerate(SCENES):
        base = cv2.resize(
            rng.random((HEIGHT // 8, (WIDTH + 40) // 8, 3)).astype(np.float32),
            (WIDTH + 40, HEIGHT),
            interpolation=cv2.INTER_CUBIC,
        )
        fine = cv2.GaussianBlur(rng.random((HEIGHT, WIDTH + 40, 3)).astype(np.float32), (0, 0), 1.6)
        texture = np.clip(255 * (0.55 * base + 0.45 * fine), 0, 255)
        colour = np.array([[230, 120, 30], [40, 90, 230]][scene], np.float32)
        for t in range(stop - start):
            frame = texture[:, t : t + WIDTH].copy()
            yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
            mask = (yy - 0.55 * HEIGHT) ** 2 + (xx - 0.35 * WIDTH - t) ** 2 < (0.17 * WIDTH) ** 2
            frame[mask] = np.clip((colour * (0.8 + 0.4 * fine[:, t : t + WIDTH, :1]))[mask], 0, 255)
            frames.append(frame.astype(np.uint8))
            masks.append(mask)
    return np.stack(frames), np.stack(masks)


def write_source(path: Path, frames: np.ndarray) -> Path:
    seconds = len(frames) / FPS
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)
    return write_video(path, frames, FPS, audio_pcm=(tone[None, :], 16000))


def box_attention(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A stand-in A_t for planning: 0.3 on the product, 0.1 elsewhere (rendering only needs a map)."""
    return np.where(masks, 0.3, 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    frames, masks = synthetic_ad()
    source = write_source(root / "ad_1.mp4", frames)
    attention = box_attention(frames, masks)
    a = (attention * masks).sum(axis=(1, 2)) / attention.sum(axis=(1, 2))
    plans = plan_variants("ad_1", a, FPS, SCENES)
    result = render_variants(
        source,
        plans,
        masks,
        attention,
        SalienceEditor(),
        root / "out",
        keyframe_stride=4,
        seed=7,
        strength_map=StrengthMap(),
    )
    return source, frames, masks, plans, result


def test_outputs_are_playable_h264_with_audio_at_source_geometry(rendered) -> None:
    source, frames, _masks, plans, result = rendered
    src = probe_video(source)
    assert src.has_audio
    for name, path in {**result.variant_paths, "comparison": result.comparison_path}.items():
        probe = probe_video(path)
        assert probe.video_codec == "h264", name
        assert probe.has_audio and probe.audio_codec == "aac", name
        assert probe.frame_count == len(frames) and probe.fps_fraction == src.fps_fraction, name
        assert abs(probe.duration_s - src.duration_s) < 1e-6
    probe = probe_video(result.variant_paths["baseline"])
    assert (probe.width, probe.height) == (WIDTH, HEIGHT)
    comparison = probe_video(result.comparison_path)
    assert (comparison.width, comparison.height) == (4 * WIDTH // 2, 2 * HEIGHT // 2)
    sheet = cv2.imread(str(result.contact_sheet_path))
    assert sheet is not None and sheet.shape[0] >= 8 * 20  # original + 7 rows


def test_manifest_records_lineage(rendered) -> None:
    source, _frames, _masks, plans, result = rendered
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["source"]["sha256"] == probe_video(source).sha256
    assert manifest["seed"] == 7 and manifest["editor"]["editor"] == "salience"
    # The salience editor is cheap and deterministic: every frame is edited with its own mask.
    assert manifest["config"]["edit_every_frame"] is True and manifest["config"]["keyframe_stride_requested"] == 4
    assert manifest["keyframes"] == list(range(24)) and manifest["keyframe_share"] == 1.0
    assert manifest["edit_calls"] < manifest["edit_calls_without_sharing"]  # shared edits are not redone
    assert set(manifest["variants"]) == set(plans.plans)
    for _name, entry in manifest["variants"].items():
        assert len(entry["sha256"]) == 64 and entry["frames_written"] == 24
    assert manifest["variants"]["placebo"]["keyframe_mean_abs_change"] > 0
    assert manifest["inputs"]["masks_sha256"] and manifest["inputs"]["attention_sha256"]
    leftovers = [p.name for p in result.output_dir.parent.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []


def test_baseline_is_the_original_through_the_pipeline_and_placebo_spares_the_product(rendered) -> None:
    source, _frames, masks, _plans, result = rendered
    decoded = read_frames(source).astype(int)
    baseline = read_frames(result.variant_paths["baseline"]).astype(int)
    placebo = read_frames(result.variant_paths["placebo"]).astype(int)
    boost = read_frames(result.variant_paths["full_boost"]).astype(int)
    assert np.abs(baseline - decoded).mean() < 4.0  # only the H.264 re-encode (crf 18, yuv420p) of fine noise
    inside = masks
    # Product pixels: the placebo differs from the source there only by re-encoding, like the baseline
    # (the pre-encode frames are exact copies; see test_propagation and test_salience_editor).
    codec_noise = np.abs(baseline[inside] - decoded[inside]).mean()
    assert np.abs(placebo[inside] - decoded[inside]).mean() < codec_noise + 1.0
    assert np.abs(placebo[~inside] - baseline[~inside]).mean() > 2.0  # the background was edited
    assert np.abs(boost[~inside] - baseline[~inside]).mean() > 5.0


def test_keyframes_and_flow_propagation_when_not_editing_every_frame(rendered, tmp_path) -> None:
    source, _frames, masks, plans, _result = rendered
    attention = box_attention(_frames, masks)
    result = render_variants(
        source,
        plans,
        masks,
        attention,
        SalienceEditor(),
        tmp_path / "keyed",
        keyframe_stride=4,
        seed=7,
        strength_map=StrengthMap(),
        edit_every_frame=False,
    )
    manifest = result.manifest
    # Scenes [0,10) [10,24); windows start at frames 8 and 16 (thirds of 24 frames by centre time).
    assert manifest["keyframes"] == [0, 4, 8, 10, 14, 16, 20]
    assert manifest["keyframe_share"] == pytest.approx(7 / 24)
    assert manifest["config"]["edit_every_frame"] is False
    assert manifest["edit_calls"] < manifest["edit_calls_without_sharing"]


def test_every_frame_edit_is_the_editor_output_on_that_frame(rendered) -> None:
    """Non-keyframes carry the full edit (flow propagation lost most of a blur residual on the demo)."""
    source, _frames, masks, plans, result = rendered
    decoded = read_frames(source)
    boosted = read_frames(result.variant_paths["full_boost"]).astype(int)
    baseline = read_frames(result.variant_paths["baseline"]).astype(int)
    strength = StrengthMap().strength_for("boost", 1.0 / 3.0, 0.5)
    editor = SalienceEditor()
    from align_core.stimuli.editing.base import KeyframeEditRequest

    for t in (2, 13, 22):
        direct = editor.edit(
            KeyframeEditRequest(
                frame=decoded[t],
                mask=masks[t],
                attention=np.zeros(masks[t].shape, np.float32),
                target_control=np.zeros((2, *masks[t].shape), np.float32),
                original_alignment=0.0,
                target_alignment=0.0,
                allowed=np.ones(masks[t].shape, bool),
                kind="boost",
                strength=round(strength, 4),
                seed=7,
            )
        ).astype(int)
        codec = np.abs(baseline[t] - decoded[t].astype(int)).mean()
        assert np.abs(boosted[t] - direct).mean() < codec + 2.0, t


def test_mismatched_inputs_name_the_video(rendered, tmp_path) -> None:
    source, _frames, masks, plans, _result = rendered
    with pytest.raises(ValueError, match="ad_1.mp4"):
        render_variants(source, plans, masks[:5], np.zeros(masks.shape, np.float32), SalienceEditor(), tmp_path / "x")
