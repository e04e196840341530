"""Keyword masks: tiny CLIPSeg through the real from_pretrained path, provided masks on a real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align_core.io.arrays import save_mask_stack
from align_core.io.video_io import read_frames
from align_core.perception.masks import (
    DEFAULT_THRESHOLD,
    KeywordSegmenter,
    ProvidedMaskSegmenter,
    load_keyword_masks,
    make_segmenter,
    save_keyword_masks,
    segment_video,
)

HELP_FRAMES, HELP_H, HELP_W = 58, 480, 640


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-unicode table (what CLIP's BPE vocabulary is built on)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=False))


@pytest.fixture(scope="module")
def tiny_clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight CLIPSeg + tokenizer + image processor saved like a real model dir."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizer
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    chars = sorted(set(_bytes_to_unicode().values()))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPSegConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
        extract_layers=(1, 2),
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(0)
    model = CLIPSegForImageSegmentation(config).eval()
    image_processor = ViTImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.481, 0.458, 0.408], image_std=[0.269, 0.261, 0.276]
    )
    processor = CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)
    directory = tmp_path_factory.mktemp("tiny_clipseg")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def help_video(shared_data: Path) -> Path:
    return shared_data / "videos" / "help.mkv"


def _moving_box_masks(count: int, height: int, width: int) -> np.ndarray:
    masks = np.zeros((count, height, width), dtype=bool)
    for t in range(count):
        top, left = 40 + 2 * t, 30 + 5 * t
        masks[t, top : top + 90, left : left + 120] = True
    masks[count // 2] = False  # product off screen in one frame
    return masks


def test_tiny_clipseg_loads_from_disk_and_segments(tiny_clipseg_dir: Path, help_video: Path) -> None:
    segmenter = make_segmenter("clipseg", model=tiny_clipseg_dir)
    assert isinstance(segmenter, KeywordSegmenter)
    frames = read_frames(help_video, 0, 3)
    batched = segmenter.segment(frames, "red bottle")
    assert batched.shape == (3, HELP_H, HELP_W) and batched.dtype == np.float32
    assert 0.0 <= batched.min() and batched.max() <= 1.0
    assert batched.std() > 0  # upsampled from the model's grid, not a constant
    one_by_one = np.concatenate([segmenter.segment(frames[i : i + 1], "red bottle") for i in range(3)])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    lineage = segmenter.lineage()
    assert lineage["model"] == str(tiny_clipseg_dir)
    assert set(lineage["weights_sha256"]) == {"model.safetensors"}


def test_clipseg_segment_video_batch_size_does_not_change_masks(tiny_clipseg_dir: Path, help_video: Path) -> None:
    segmenter = make_segmenter("clipseg", model=tiny_clipseg_dir)
    small = segment_video(help_video, "hand", segmenter, threshold=0.5, batch_size=5)
    large = segment_video(help_video, "hand", segmenter, threshold=0.5, batch_size=16)
    assert small.masks.shape == (HELP_FRAMES, HELP_H, HELP_W)
    np.testing.assert_allclose(small.max_probability, large.max_probability, atol=1e-5)
    np.testing.assert_allclose(small.coverage, large.coverage, atol=1e-3)
    assert small.segmenter_id.startswith("clipseg:")


def test_missing_clipseg_model_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_model"):
        make_segmenter("clipseg", model=tmp_path / "no_such_model")


def test_provided_masks_round_trip_on_real_video(tmp_path: Path, help_video: Path) -> None:
    expected = _moving_box_masks(HELP_FRAMES, HELP_H, HELP_W)
    mask_file = save_mask_stack(tmp_path / "raw" / "masks" / "help.npz", expected)
    segmenter = make_segmenter("provided", mask_path=mask_file)
    result = segment_video(help_video, "hand", segmenter, batch_size=7)
    np.testing.assert_array_equal(result.masks, expected)
    np.testing.assert_allclose(result.coverage, expected.reshape(HELP_FRAMES, -1).mean(axis=1))
    assert result.coverage[HELP_FRAMES // 2] == 0.0
    assert result.lineage["mask_file"] == str(mask_file)
    saved = load_keyword_masks(save_keyword_masks(tmp_path / "out.npz", result))
    np.testing.assert_array_equal(saved.masks, expected)
    assert saved.segmenter_id == result.segmenter_id and saved.threshold == DEFAULT_THRESHOLD


def test_provided_masks_unaligned_bits_slice_correctly(tmp_path: Path) -> None:
    """Frames of 5x7 = 35 pixels start mid-byte in the packed stack; each batch must still match."""
    rng = np.random.default_rng(3)
    expected = rng.random((9, 5, 7)) > 0.5
    segmenter = ProvidedMaskSegmenter(save_mask_stack(tmp_path / "odd.npz", expected))
    frames = np.zeros((3, 5, 7, 3), dtype=np.uint8)
    for start in (0, 3, 6):
        np.testing.assert_array_equal(segmenter.segment(frames, "x", start=start) > 0.5, expected[start : start + 3])
    with pytest.raises(ValueError, match=r"holds 9 frames, asked for frames \[8, 11\)"):
        segmenter.segment(frames, "x", start=8)


def test_frame_count_mismatch_names_file_and_counts(tmp_path: Path, help_video: Path) -> None:
    mask_file = save_mask_stack(tmp_path / "short.npz", _moving_box_masks(50, HELP_H, HELP_W))
    segmenter = make_segmenter("provided", mask_path=mask_file)
    with pytest.raises(ValueError) as info:
        segment_video(help_video, "hand", segmenter)
    message = str(info.value)
    assert str(mask_file) in message and "help.mkv" in message
    assert "(50, 480, 640)" in message and "(58, 480, 640)" in message


def test_corrupt_mask_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz"):
        make_segmenter("provided", mask_path=bad)


class _RednessSegmenter:
    """Probability = how red a pixel is; a stand-in model whose output we can reason about."""

    name = "redness"

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, probe: object) -> None:
        pass

    def segment(self, frames: np.ndarray, keyword: str, *, start: int = 0) -> np.ndarray:
        self.calls += 1
        rgb = frames.astype(np.float32) / 255.0
        return np.clip(rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2]), 0.0, 1.0)

    def lineage(self) -> dict[str, object]:
        return {"segmenter": self.name}


def test_absent_product_gives_empty_mask(tmp_path: Path) -> None:
    """A frame without anything red stays empty: no per-frame normalisation finds 'something'."""
    from align_core.io.video_io import write_video

    frames = np.full((4, 64, 96, 3), 90, dtype=np.uint8)
    frames[:, :, :, 2] = 140  # bluish background, weakly varying below
    frames[:, 10:20] += np.arange(96, dtype=np.uint8)[None, None, :, None] // 8
    frames[1, 20:40, 30:60] = (230, 20, 20)  # the product appears only in frame 1
    video = write_video(tmp_path / "clip.mp4", frames, fps=10, crf=0)
    segmenter = _RednessSegmenter()
    result = segment_video(video, "red box", segmenter, threshold=0.4, batch_size=2)
    assert result.coverage[1] > 0.05
    assert result.coverage[[0, 2, 3]].tolist() == [0.0, 0.0, 0.0]
    assert result.max_probability[0] < 0.4  # the model's own low values, kept low


def test_screened_keyword_skips_model(help_video: Path) -> None:
    segmenter = _RednessSegmenter()
    result = segment_video(help_video, "shop now", segmenter, screened_reason="call to action, names no object")
    assert segmenter.calls == 0
    assert result.skipped_reason == "call to action, names no object"
    assert result.masks.shape == (HELP_FRAMES, HELP_H, HELP_W) and not result.masks.any()
    assert segment_video(help_video, "", None, screened_reason="empty keyword").skipped_reason == "empty keyword"


def test_unknown_segmenter_lists_available() -> None:
    with pytest.raises(ValueError, match=r"annotated, clipseg, clipseg\+annotated, provided"):
        make_segmenter("sam")
