"""The demo's realistic-size ad (align_demo.real_size), at tiny sizes so the tests stay fast.

The default ad is 1080x1920 at 30 fps for 20 s; every test here passes a small frame size and
a fraction of a second (the code path is the same: one frame at a time, per-frame packed masks).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from align_core.inputs.research_csvs import read_alignment_scores, read_keywords
from align_core.io.frames import MaskFrames
from align_core.io.hashing import file_sha256
from align_core.io.layout import DataLayout
from align_core.io.video_io import iter_frames, probe_video, read_frame
from align_core.perception.masks import ProvidedMaskSegmenter
from align_demo import cli as demo
from align_demo.corpus import DemoCorpus, generate_demo_corpus
from align_demo.real_size import CALL_TO_ACTION, PRICE, write_real_size_ad

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

SEED = 11
TINY = {"real_size_seconds": 0.5, "real_size_frame": (216, 384)}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, keywords_source: Path) -> tuple[DemoCorpus, DemoCorpus]:
    """The same demo corpus without and with one (tiny) realistic-size ad."""
    kwargs = {
        "n_videos": 3,
        "seed": SEED,
        "keywords_source": keywords_source,
        "width": 144,
        "height": 256,
        "duration_range_s": (4.0, 4.0),
    }
    plain = generate_demo_corpus(tmp_path_factory.mktemp("plain"), **kwargs)
    with_ad = generate_demo_corpus(tmp_path_factory.mktemp("with_ad"), real_size_ads=1, **kwargs, **TINY)
    return plain, with_ad


def _masks(path: Path) -> MaskFrames:
    with np.load(path, allow_pickle=False) as data:
        return MaskFrames.from_arrays(data, "mask")


def test_the_ad_is_a_real_h264_video_with_audio_and_a_matching_provided_mask(pair) -> None:
    _, corpus = pair
    (ad,) = corpus.real_size_videos
    probe = probe_video(ad.path)
    assert (probe.width, probe.height, probe.fps) == (216, 384, 30.0)
    assert probe.video_codec == "h264" and probe.has_audio and probe.audio_codec == "aac"
    assert probe.frame_count == ad.n_frames == 15
    masks = _masks(ad.mask_path)
    assert masks.shape == (ad.n_frames, 384, 216)
    ProvidedMaskSegmenter(ad.mask_path).prepare(probe)  # the platform's own reader accepts it for this video
    coverage = masks.coverage_per_frame()
    np.testing.assert_allclose(coverage, [masks[t].mean() for t in range(len(masks))])
    # Scene by scene: shown, leaving, absent (an empty mask for the whole scene).
    assert [s.product_presence for s in ad.scenes] == ["full", "exit", "absent"]
    absent = ad.scenes[2]
    assert not coverage[absent.start_frame : absent.end_frame].any() and absent.attention_proportion == 0.0
    shown = ad.scenes[0]
    centroids = [np.argwhere(masks[t]).mean(axis=0) for t in range(shown.start_frame, shown.end_frame)]
    assert np.abs(centroids[-1] - centroids[0]).max() > 0.5  # the product moves


def test_rows_parse_with_the_platform_loaders_and_the_id_is_new(pair, keywords_source: Path) -> None:
    _, corpus = pair
    (ad,) = corpus.real_size_videos
    layout = corpus.layout
    scores = read_alignment_scores(layout.alignment_csv).raise_for_problems()
    rows = scores.scenes_for(ad.video_id)
    assert rows["scene_number"].tolist() == [1, 2, 3]
    assert rows["start_time"].iloc[0] == 0.0 and rows["end_time"].iloc[-1] == pytest.approx(ad.duration_s)
    assert set(rows["industry"]) == {ad.industry}
    keywords = read_keywords(layout.keywords_csv).raise_for_problems()
    assert keywords.keywords[ad.video_id] == ad.keyword and ad.keyword_kind == "product"
    assert len(ad.video_id) == 19 and ad.video_id.isdigit()
    real_ids = set(pd.read_csv(keywords_source, dtype=str, keep_default_na=False)["_id"])
    assert ad.video_id not in real_ids
    # It joins the simulated A/B experiment: its industry is one the standard product ads already have.
    assert ad.industry in {v.industry for v in corpus.videos if v.keyword_kind == "product"}


def test_adding_the_ad_clobbers_none_of_the_other_videos(pair) -> None:
    plain, with_ad = pair
    assert with_ad.video_ids[: len(plain.videos)] == [v.video_id for v in plain.videos]
    for before, after in zip(plain.videos, with_ad.videos, strict=False):
        assert before.scenes == after.scenes and file_sha256(before.mask_path) == file_sha256(after.mask_path)
    plain_rows = plain.layout.alignment_csv.read_text().splitlines()
    new_rows = with_ad.layout.alignment_csv.read_text().splitlines()
    ad_id = with_ad.real_size_videos[0].video_id
    assert [row for row in new_rows if not row.startswith(ad_id)] == plain_rows
    assert sum(row.startswith(ad_id) for row in new_rows) == 3
    assert with_ad.layout.keywords_csv.read_text().startswith(plain.layout.keywords_csv.read_text())
    recorded = json.loads(with_ad.json_path.read_text())
    assert [v["video_id"] for v in recorded["real_size_ads"]] == [ad_id]
    assert recorded["real_size_ads"][0]["width"] == 216 and "real_size_note" in recorded
    assert "real_size_ads" not in json.loads(plain.json_path.read_text())


def test_rebuilding_without_the_ad_removes_its_files(tmp_path: Path) -> None:
    small = {
        "n_videos": 1,
        "seed": 3,
        "n_empty_keywords": 0,
        "n_cta_keywords": 0,
        "width": 144,
        "height": 256,
        "duration_range_s": (4.0, 4.0),
    }
    first = generate_demo_corpus(tmp_path, real_size_ads=1, **small, **TINY)
    (ad,) = first.real_size_videos
    assert ad.path.exists() and ad.mask_path.exists()
    again = generate_demo_corpus(tmp_path, **small)
    assert not ad.path.exists() and not ad.mask_path.exists()
    assert ad.video_id not in again.layout.keywords_csv.read_text()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"real_size_ads": -1}, "real_size_ads=-1"),
        ({"real_size_ads": 1, "real_size_frame": (215, 384)}, "215x384"),
        ({"real_size_ads": 1, "real_size_seconds": 0.1}, "at least 9 frames"),
    ],
)
def test_bad_real_size_arguments_say_what_is_wrong(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo_corpus(tmp_path, n_videos=1, n_empty_keywords=0, n_cta_keywords=0, **kwargs)
    assert not any(DataLayout(tmp_path).videos_dir.glob("*.mp4"))  # checked before anything is rendered


def test_the_overlays_are_text_the_protected_regions_stage_reads(tmp_path: Path) -> None:
    """PP-OCRv4 (rapidocr), as the protected-regions stage runs it, reads the price and the call to action."""
    from align_core.perception.protect import TextReader

    info = write_real_size_ad(tmp_path, seconds=0.3, width=540, height=960, fps=30)
    layout = DataLayout(tmp_path)
    path = layout.videos_dir / f"{info['video_id']}.mp4"
    assert info["frames"] == 9 and info["scenes"] == 3
    assert read_alignment_scores(layout.alignment_csv).raise_for_problems().video_ids == [info["video_id"]]
    texts = {d.text for d in TextReader().read(read_frame(path, 4))}  # scene 2: caption, price tag, banner
    assert PRICE in texts and CALL_TO_ACTION in texts
    assert sum(1 for _ in iter_frames(path)) == 9


def test_align_demo_adds_the_ad_unless_told_not_to(tmp_path: Path, monkeypatch) -> None:
    calls: list[dict] = []

    def fake_build(layout, n_videos, seed, shared_data, include_real, **kwargs):
        calls.append(kwargs)
        return []

    monkeypatch.setattr(demo, "build_corpus", fake_build)
    monkeypatch.setattr(demo, "run_command", lambda *args, **kwargs: {})
    for env in ("ALIGN_DATA_DIR", "ALIGN_PROFILE", "DAGSTER_HOME"):  # main sets them: restore afterwards
        monkeypatch.setenv(env, "unset")
        monkeypatch.delenv(env)
    assert demo.main(["--data-dir", str(tmp_path / "a"), "--no-real-clips"]) == 0
    assert demo.main(["--data-dir", str(tmp_path / "b"), "--no-real-clips", "--no-real-size-ad"]) == 0
    assert calls == [{"real_size_ads": 1, "real_size_seconds": 20.0}, {"real_size_ads": 0, "real_size_seconds": 20.0}]


def test_build_corpus_puts_the_realistic_size_ad_first(tmp_path: Path) -> None:
    """The longest video starts first, so the demo's video workers finish together (0.3 s at full size here)."""
    layout = DataLayout(tmp_path / "demo").ensure()
    ids = demo.build_corpus(layout, 1, 7, None, include_real=False, real_size_ads=1, real_size_seconds=0.3)
    recorded = json.loads((layout.raw_dir / "demo_corpus.json").read_text())
    (ad,) = recorded["real_size_ads"]
    assert (ad["width"], ad["height"], ad["fps"], ad["n_frames"]) == (1080, 1920, 30.0, 9)
    assert ids[0] == ad["video_id"] and len(ids) == 2
