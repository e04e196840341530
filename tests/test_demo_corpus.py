"""The demo corpus generator: determinism, exact masks, real schemas, hard cuts, sound."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from align_core.io.arrays import load_mask_stack
from align_core.io.hashing import file_sha256
from align_core.io.layout import DataLayout
from align_core.io.video_io import iter_frames, probe_video
from align_demo.corpus import (
    ALIGNMENT_COLUMNS,
    CTA_KEYWORDS,
    INDUSTRIES,
    KEYWORD_COLUMNS,
    PLANTED_RELATION,
    DemoCorpus,
    centre_bias_weights,
    generate_demo_corpus,
)

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

SEED = 11


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, keywords_source: Path) -> DemoCorpus:
    return generate_demo_corpus(
        tmp_path_factory.mktemp("demo_a"),
        n_videos=2,
        seed=SEED,
        keywords_source=keywords_source,
        include_real_clips=True,
    )


def _text_files(layout: DataLayout) -> dict[str, str]:
    return {
        name: file_sha256(layout.raw_dir / name) for name in ("alignment_score.csv", "keywords.csv", "demo_corpus.json")
    }


def test_same_seed_is_byte_identical_and_other_seed_differs_and_replaces(
    corpus: DemoCorpus, tmp_path: Path, keywords_source: Path
) -> None:
    again = generate_demo_corpus(
        tmp_path, n_videos=2, seed=SEED, keywords_source=keywords_source, include_real_clips=True
    )
    assert again.video_ids == corpus.video_ids
    assert _text_files(again.layout) == _text_files(corpus.layout)
    for first, second in zip(corpus.videos, again.videos, strict=False):
        assert file_sha256(first.mask_path) == file_sha256(second.mask_path)
        assert first.scenes == second.scenes

    other = generate_demo_corpus(tmp_path, n_videos=2, seed=SEED + 1, keywords_source=keywords_source)
    assert set(other.video_ids).isdisjoint(corpus.video_ids)
    assert file_sha256(other.layout.alignment_csv) != file_sha256(corpus.layout.alignment_csv)
    assert file_sha256(other.layout.keywords_csv) != file_sha256(corpus.layout.keywords_csv)
    # The earlier corpus's files in this directory are gone (only the ones it listed), no temp files left.
    names = sorted(p.name for p in (tmp_path / "raw" / "videos").iterdir())
    assert names == sorted(f"{v}.mp4" for v in other.video_ids)
    assert sorted(p.stem for p in (tmp_path / "raw" / "masks").iterdir()) == sorted(other.video_ids)
    assert not [p for p in (tmp_path / "raw").rglob(".*tmp-*")]


def test_videos_round_trip_with_sound_and_masks_where_the_product_is(corpus: DemoCorpus) -> None:
    some_empty = False
    for video in corpus.videos:
        probe = probe_video(video.path)
        masks = load_mask_stack(video.mask_path)
        assert (probe.video_codec, probe.width, probe.height) == ("h264", 288, 512)
        assert probe.fps == 12 and probe.has_audio and probe.audio_codec == "aac"
        assert probe.frame_count == video.n_frames == masks.shape[0]
        assert masks.shape[1:] == (512, 288)
        assert 4.0 <= probe.duration_s <= 10.0 and 3 <= len(video.scenes) <= 5
        areas = masks.reshape(masks.shape[0], -1).sum(axis=1)
        some_empty |= bool((areas == 0).any())
        assert (areas > 0).any(), f"{video.video_id}: product never visible"

        checked, same_colour = 0, 0
        for index, frame in enumerate(iter_frames(video.path)):
            mask = masks[index].astype(np.uint8)
            inner = cv2.erode(mask, np.ones((7, 7), np.uint8)) > 0  # away from chroma-subsampled edges
            on_border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
            if inner.sum() < 300 or on_border:  # only whole products: a part has another mean colour
                continue
            ring = (cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0) & ~(
                cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
            )
            inside = frame[inner].astype(float).mean(axis=0)
            outside = frame[ring].astype(float).mean(axis=0)
            # Unlike what surrounds it, and (unless a price tag hides part of it) the product's own colours
            # in every scene, whatever the background.
            assert np.abs(inside - outside).sum() > 30, (video.video_id, index, inside, outside)
            same_colour += int(np.abs(inside - np.array(video.product_mean_rgb)).max() < 12)
            checked += 1
        assert checked >= 10 and same_colour >= 0.6 * checked, (video.video_id, checked, same_colour)

        # attention_proportion is exactly the documented centre-bias share of the mask.
        weights = centre_bias_weights(512, 288)
        shares = (masks * weights).sum(axis=(1, 2)) / weights.sum()
        for scene in video.scenes:
            assert scene.attention_proportion == pytest.approx(
                shares[scene.start_frame : scene.end_frame].mean(), abs=2e-6
            )
            if scene.product_presence == "absent":
                assert scene.attention_proportion == 0.0
    assert some_empty, "no video has a frame without the product"


def test_csv_schemas_ids_scene_times_and_keywords(corpus: DemoCorpus, keywords_source: Path) -> None:
    layout = corpus.layout
    header = layout.alignment_csv.read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(ALIGNMENT_COLUMNS)
    assert layout.keywords_csv.read_text(encoding="utf-8").splitlines()[0] == ",".join(KEYWORD_COLUMNS)

    scenes = pd.read_csv(layout.alignment_csv, dtype={"video id": str})
    keywords = pd.read_csv(layout.keywords_csv, dtype=str, keep_default_na=False)
    assert tuple(scenes.columns) == ALIGNMENT_COLUMNS and tuple(keywords.columns) == KEYWORD_COLUMNS
    generated = [v.video_id for v in corpus.videos]
    assert all(len(i) == 19 and i.isdigit() and i.startswith("72") for i in generated)
    assert len(set(generated)) == len(generated)
    assert keywords["_id"].tolist() == corpus.video_ids

    real = pd.read_csv(keywords_source, dtype=str, keep_default_na=False)
    real_keywords = set(real["keyword_list[0]"])
    assert not set(generated) & set(real["_id"])
    mine = dict(zip(keywords["_id"], keywords["keyword_list[0]"], strict=False))
    assert all(mine[i] in real_keywords for i in generated)
    assert "" in [mine[i] for i in generated] and any(mine[i] in CTA_KEYWORDS for i in generated)
    assert mine["real-fruit-and-vegetable-detection"] == "fruit" and mine["real-help"] == "hands"

    without_rows = [v for v in corpus.videos if not v.has_scene_rows]
    assert len(without_rows) == 1 and without_rows[0].video_id not in set(scenes["video id"])
    assert not scenes["video id"].str.startswith("real-").any()
    for video in corpus.videos:
        rows = scenes[scenes["video id"] == video.video_id]
        if not video.has_scene_rows:
            continue
        assert rows["Scene Number"].tolist() == list(range(1, len(video.scenes) + 1))
        starts, ends = rows["start_time"].to_numpy(), rows["end_time"].to_numpy()
        assert starts[0] == 0.0 and np.array_equal(starts[1:], ends[:-1])
        assert ends[-1] == pytest.approx(video.n_frames / 12.0, abs=1e-9)
        assert np.array_equal(np.round(starts * 12).astype(int), [s.start_frame for s in video.scenes])
        assert rows["industry"].isin(INDUSTRIES).all()
        for column in ("attention_proportion", "CTR_mean", "CVR_mean", "Remain_mean", "contrast", "brightness"):
            assert rows[column].between(0, 1).all(), column


def test_planted_relation_is_documented_and_holds(corpus: DemoCorpus) -> None:
    doc = json.loads(corpus.json_path.read_text(encoding="utf-8"))
    assert doc["planted_relation"]["ctr"]["attention_proportion"] == 1.2
    assert doc["videos_without_scene_rows"] == [v.video_id for v in corpus.videos if not v.has_scene_rows]
    mean, sd = doc["contrast_z"]["mean"], doc["contrast_z"]["sd"]
    ctr = PLANTED_RELATION["ctr"]
    for video in corpus.videos:
        for scene in video.scenes:
            expected = (
                ctr["intercept"]
                + ctr["industry"][video.industry]
                + ctr["attention_proportion"] * scene.attention_proportion
                + ctr["contrast_z"] * (scene.contrast - mean) / sd
            )
            residual = math.log(scene.ctr / (1 - scene.ctr)) - expected
            assert abs(residual) < 5 * ctr["noise_sd"]
            assert scene.clicks == pytest.approx(scene.ctr * video.impressions, rel=1e-5)
            assert scene.conversions == pytest.approx(scene.cvr * scene.clicks, rel=1e-5)


def test_scene_cuts_are_hard(corpus: DemoCorpus) -> None:
    for video in corpus.videos:
        cuts = {scene.start_frame for scene in video.scenes[1:]}
        at_cut, within = [], []
        previous = None
        for index, frame in enumerate(iter_frames(video.path)):
            current = frame.astype(np.float32)
            if previous is not None:
                (at_cut if index in cuts else within).append(float(np.abs(current - previous).mean()))
            previous = current
        assert len(at_cut) == len(cuts)
        assert min(at_cut) > 3 * max(within), (video.video_id, at_cut, max(within))


def test_pyscenedetect_content_detector_finds_every_cut(corpus: DemoCorpus) -> None:
    """The video without scene rows must be recoverable by the catalog's default cut detector."""
    scenedetect = pytest.importorskip("scenedetect")
    for video in corpus.videos:
        manager = scenedetect.SceneManager()
        manager.add_detector(scenedetect.ContentDetector())
        manager.detect_scenes(scenedetect.open_video(str(video.path)))
        found = [start.get_frames() for start, _ in manager.get_scene_list()]
        assert found == [scene.start_frame for scene in video.scenes], video.video_id


def test_real_clips_are_copied_unchanged_without_masks(corpus: DemoCorpus, shared_data: Path) -> None:
    assert [c.video_id for c in corpus.real_clips] == ["real-fruit-and-vegetable-detection", "real-help"]
    for clip in corpus.real_clips:
        assert file_sha256(clip.path) == file_sha256(shared_data / "videos" / clip.source.name)
        assert not corpus.layout.provided_mask_path(clip.video_id).exists()
        assert corpus.layout.video_path(clip.video_id) == clip.path
    # ... but with product boxes in the demo's own annotations file, so they get annotated masks.
    from align_core.inputs.annotations import annotations_path, read_annotations

    table = read_annotations(annotations_path(corpus.layout))
    assert table.video_ids == [c.video_id for c in corpus.real_clips]
    assert all(row.kind == "box" for c in corpus.real_clips for row in table.rows_for(c.video_id))
    # The signer's face is protected in every variant by a user region (no packaged face detector).
    from align_core.perception.protect import read_user_regions

    help_clip = next(c for c in corpus.real_clips if c.video_id == "real-help")
    regions = read_user_regions("real-help", corpus.layout.protect_csv, None, 58, 480, 640, {1: (0, 58)})
    assert not regions.empty, help_clip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_videos": 0}, "n_videos"),
        ({"width": 287}, "even"),
        ({"n_videos": 2, "videos_without_scene_rows": 3}, "videos_without_scene_rows"),
        ({"n_videos": 1, "n_empty_keywords": 1, "n_cta_keywords": 1}, "n_cta_keywords"),
    ],
)
def test_bad_arguments_say_what_is_wrong(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo_corpus(tmp_path, **kwargs)


def test_keywords_source_without_the_real_columns_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "kw.csv"
    bad.write_text("id,keyword\n1,shoes\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"kw\.csv.*keyword_list\[0\]"):
        generate_demo_corpus(tmp_path / "data", n_videos=3, keywords_source=bad)
