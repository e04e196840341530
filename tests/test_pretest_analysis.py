"""Pretest analysis: collecting session files, human maps and alignment, the human manipulation check."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from pretest_sim import SimStudy, write_participants

from align_core.measurement.manipulation import alignment, scaled_alignment
from align_core.perception.attention.geometry import ViewingGeometry
from align_core.pretest.collect import (
    FRAME_TIME_SLACK_S,
    collect_pretest,
    load_collected_study,
    read_session_file,
    session_files,
)
from align_core.pretest.human_maps import (
    VideoGrid,
    grid_coverage,
    human_alignment,
    human_maps,
    sample_counts,
    scorer_card,
    trial_alignment,
    window_sigma_px,
)
from align_core.stimuli.plans import parse_variants
from analysis.pretest import (
    human_manipulation_check,
    human_variant_verdicts,
    participants_needed,
    realism_table,
    sample_size_plan,
    trial_window_means,
    two_way_contrast,
)

SPECS = parse_variants(
    [
        {"name": "baseline", "window": "none", "factor": 1, "kind": "identity"},
        {"name": "early_boost", "window": "early", "factor": 1.5, "kind": "boost"},
        {"name": "placebo", "window": "full", "factor": 1.5, "kind": "placebo"},
    ]
)


def _tables(database: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").df()
            for table in ("pretest_sessions", "pretest_cursor", "pretest_realism")
        }


def _check(data_dir: Path, database: Path, sim: SimStudy) -> pd.DataFrame:
    collect_pretest(data_dir, database)
    cursor = _tables(database)["pretest_cursor"]
    study = load_collected_study(data_dir, sim.study_id)
    trials = pd.concat(
        [trial_alignment(cursor[cursor["video_id"] == v["video_id"]], v, study, sim.masks()) for v in study["videos"]]
    )
    return human_manipulation_check(trial_window_means(trials), SPECS, "baseline")


@pytest.fixture
def pilot(tmp_path: Path) -> tuple[Path, Path, SimStudy]:
    sim = SimStudy()
    write_participants(tmp_path, sim, participants=6, change=0.3)
    return tmp_path, tmp_path / "warehouse.duckdb", sim


def test_collection_is_idempotent_and_counts_a_replayed_batch_once(pilot):
    data_dir, database, sim = pilot
    first = collect_pretest(data_dir, database)[0]
    before = _tables(database)
    path = session_files(data_dir, sim.study_id)[0]
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[2])  # the server wrote a replayed cursor batch twice
    second = collect_pretest(data_dir, database)[0]
    after = _tables(database)
    assert second.duplicates == 1 and first.duplicates == 0
    for table, frame in before.items():
        pd.testing.assert_frame_equal(frame, after[table])
    assert len(before["pretest_sessions"]) == 6
    assert before["pretest_cursor"]["batch_id"].nunique() == 6 * len(sim.videos) * 3


def test_a_warehouse_from_before_the_pointer_column_gets_it(pilot):
    """Pretest tables made before ``pretest_cursor.pointer`` existed gain the column on the next collection."""
    data_dir, database, _ = pilot
    old_cursor = (
        "CREATE TABLE pretest_cursor (study_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL,"
        " video_id VARCHAR NOT NULL, variant VARCHAR NOT NULL, trial_index INTEGER, batch_id VARCHAR NOT NULL,"
        " sample_index INTEGER NOT NULL, media_time_s DOUBLE, frame_index INTEGER, x DOUBLE, y DOUBLE,"
        " in_frame BOOLEAN NOT NULL)"
    )
    with duckdb.connect(str(database)) as con:
        con.execute(old_cursor)
    collect_pretest(data_dir, database)
    cursor = _tables(database)["pretest_cursor"]
    assert "pointer" in cursor.columns and len(cursor) > 0
    assert cursor["pointer"].isna().all()  # the simulated files come from a page that did not send it


def test_practice_is_not_collected_and_samples_outside_the_video_are_marked(pilot):
    data_dir, database, sim = pilot
    collect_pretest(data_dir, database)
    cursor = _tables(database)["pretest_cursor"]
    assert "practice" not in set(cursor["video_id"])
    outside = cursor[cursor["x"] > 1]
    assert len(outside) and not outside["in_frame"].any() and cursor[cursor["x"] <= 1]["in_frame"].all()
    assert (cursor["frame_index"] == np.floor((cursor["media_time_s"] + FRAME_TIME_SLACK_S) * sim.fps)).all()
    sessions = _tables(database)["pretest_sessions"]
    assert sessions["completed"].all() and (sessions["attention_checks_passed"] == 1).all()


def test_a_truncated_last_line_is_skipped_with_a_warning_naming_file_and_line(pilot, caplog):
    data_dir, database, sim = pilot
    collect_pretest(data_dir, database)
    before = _tables(database)
    path = session_files(data_dir, sim.study_id)[0]
    count = len(path.read_text().splitlines())
    session_id = path.stem
    torn = json.dumps({"kind": "cursor", "session_id": session_id, "batch_id": "f" * 32, "samples": [[0.1, 0.5, 0.5]]})
    with open(path, "a") as handle:
        handle.write(torn[: len(torn) // 2])  # a killed server: no newline, half a record
    with caplog.at_level(logging.WARNING):
        report = collect_pretest(data_dir, database)[0]
    assert report.warnings == [f"{path}: line {count + 1} is truncated (a batch cut off mid-write); skipped"]
    assert str(path) in caplog.text
    for table, frame in before.items():
        pd.testing.assert_frame_equal(frame, _tables(database)[table])


def test_a_corrupt_line_in_the_middle_fails_naming_file_and_line(pilot):
    data_dir, database, sim = pilot
    path = session_files(data_dir, sim.study_id)[0]
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3] + ["{not json\n"] + lines[3:]))
    with pytest.raises(ValueError, match=rf"{path.name}: line 4 is not valid JSON"):
        collect_pretest(data_dir, database)


def test_a_record_of_another_session_is_refused(pilot):
    data_dir, database, sim = pilot
    first, second = session_files(data_dir, sim.study_id)[:2]
    with open(first, "a") as handle:
        handle.write(second.read_text().splitlines()[1] + "\n")
    with pytest.raises(ValueError, match=rf"line \d+ belongs to session '{second.stem}'"):
        collect_pretest(data_dir, database)


def test_withdrawal_deletes_the_sessions_rows(pilot):
    data_dir, database, sim = pilot
    collect_pretest(data_dir, database)
    withdrawn = session_files(data_dir, sim.study_id)[0]
    withdrawn.unlink()
    collect_pretest(data_dir, database)
    for table, frame in _tables(database).items():
        assert withdrawn.stem not in set(frame["session_id"]), table
        assert frame["session_id"].nunique() == 5, table


def test_human_alignment_is_the_models_alignment():
    rng = np.random.default_rng(3)
    masks = rng.random((5, 40, 24)) > 0.7
    grid = VideoGrid.for_video(5, 40, 24, max_side=64)
    counts = sample_counts(grid, rng.integers(0, 5, 50), rng.random(50), rng.random(50))
    maps = human_maps(counts, 2.0, temporal_k=0)
    values = human_alignment(maps, grid_coverage(masks, grid))
    assert np.allclose(maps.reshape(5, -1).sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(values, [alignment(maps[t], masks[t]) for t in range(5)])
    coarse = VideoGrid.for_video(5, 40, 24, max_side=20)
    coarse_maps = human_maps(sample_counts(coarse, [0], [0.5], [0.5]), 1.0, 0)
    coarse_values = human_alignment(coarse_maps, grid_coverage(masks, coarse))
    assert coarse_values[0] == pytest.approx(scaled_alignment(coarse_maps[0], coarse.coverage(masks[0])))
    assert coarse.coverage(masks[0]).shape == (20, 12) and np.isnan(coarse_values[1])


def test_the_blur_has_the_windows_scale_from_the_attention_maps_geometry():
    sigma = window_sigma_px(3.0, {"distance_cm": 30.0, "screen_height_cm": 14.0}, 288, 512)
    radius = ViewingGeometry(288, 14.0 * 288 / 512, 30.0).patch_radius_px(3.0)
    assert sigma == pytest.approx(radius / math.sqrt(2))
    with pytest.raises(ValueError, match="window_deg must be positive"):
        window_sigma_px(0.0, {"distance_cm": 30.0, "screen_height_cm": 14.0}, 288, 512)


def test_planted_boost_is_recovered_and_the_placebo_shows_nothing(tmp_path: Path):
    sim = SimStudy()
    write_participants(tmp_path, sim, participants=36, change=0.3, seed=5)
    check = _check(tmp_path, tmp_path / "w.duckdb", sim).set_index(["variant", "window"])
    boosted = check.loc[("early_boost", "early")]
    assert boosted["verdict"] == "passed" and boosted["ci_low"] > 0.1
    assert 0.2 < boosted["estimate"] < 0.35  # 0.3 of the frames more on a product holding ~95 % of the blob
    assert check.loc[("early_boost", "late"), "verdict"] == "not passed"
    placebo = check.loc["placebo"]
    assert (placebo["verdict"] == "not passed").all() and placebo["as_planned"].all()
    verdicts = human_variant_verdicts(check.reset_index(), SPECS).set_index("variant")["human_check"]
    assert verdicts.to_dict() == {"early_boost": "passed", "placebo": "passed"}


def test_a_placebo_that_moved_attention_fails_its_human_check(tmp_path: Path):
    sim = SimStudy()
    write_participants(tmp_path, sim, participants=30, change=0.3, seed=2, boosted=("early_boost", "placebo"))
    check = _check(tmp_path, tmp_path / "w.duckdb", sim)
    verdicts = human_variant_verdicts(check, SPECS).set_index("variant")["human_check"]
    assert verdicts["placebo"] == "not passed"


def test_too_few_participants_is_not_enough_data(tmp_path: Path):
    sim = SimStudy()
    write_participants(tmp_path, sim, participants=6, change=0.3)
    check = _check(tmp_path, tmp_path / "w.duckdb", sim)
    assert (check["verdict"] == "not enough data").all() and not check["as_planned"].any()
    assert (human_variant_verdicts(check, SPECS)["human_check"] == "not enough data").all()


def _simulated_trials(rng: np.random.Generator, delta: float, participants: int = 30, videos: int = 6) -> dict:
    video_mean, video_effect = rng.normal(0, 0.05, videos), rng.normal(0, 0.03, videos)
    rows = []
    for p in range(participants):
        person = rng.normal(0, 0.05)
        for v in range(videos):
            arm = (p + v) % 3  # Latin square over baseline / treated / a third arm left out here
            if arm < 2:
                y = 0.3 + person + video_mean[v] + (delta + video_effect[v]) * arm + rng.normal(0, 0.1)
                rows.append((p, v, arm, y))
    frame = pd.DataFrame(rows, columns=["p", "v", "treated", "y"])
    return two_way_contrast(frame["treated"].to_numpy(), frame["y"].to_numpy(), frame["p"], frame["v"])


def test_the_two_way_clustered_ci_covers_the_planted_change_about_95_percent():
    rng = np.random.default_rng(11)
    results = [_simulated_trials(rng, delta=0.1) for _ in range(200)]
    coverage = np.mean([r["ci_low"] <= 0.1 <= r["ci_high"] for r in results])
    assert 0.91 <= coverage <= 0.99, coverage


def test_participants_needed_scales_the_pilots_clustered_se():
    # N0 (SE0 (1.96 + 0.84) / change)^2 = 40 * 2.8^2 = 314 (rounded up), then to whole lists of 3
    assert participants_needed(0.02, 40, 0.02) == 314
    assert participants_needed(0.02, 40, 0.02, lists=3) == 315
    assert participants_needed(0.02, 40, 0.04) < participants_needed(0.02, 40, 0.02)
    check = pd.DataFrame([{"variant": "v", "window": "early", "participants": 40, "se": 0.02}])
    assert sample_size_plan(check, 0.02)["participants_needed"].tolist() == [314]
    with pytest.raises(ValueError, match="non-zero change"):
        participants_needed(0.02, 40, 0.0)


def test_scorer_card_scores_a_perfect_scorer_above_a_flat_one():
    rng = np.random.default_rng(0)
    grid = VideoGrid.for_video(4, 32, 20, 64)
    counts = sample_counts(grid, rng.integers(0, 4, 40), rng.random(40) * 0.3, rng.random(40) * 0.3)
    maps = human_maps(counts, 1.5, 0)
    models = {"perfect": {"v": maps}, "noise": {"v": rng.random(maps.shape)}}
    card = scorer_card([("v", counts, maps)], models).set_index("scorer")
    assert card.loc["perfect", "cc"] == pytest.approx(1.0)
    assert card.loc["perfect", "nss"] > card.loc["noise", "nss"] and card.loc["noise", "cc"] < 0.5


def test_realism_detection_rate_with_its_ci_against_chance():
    realism = pd.DataFrame(
        {
            "session_id": [f"s{i}" for i in range(40)],
            "variant": "early_boost",
            "mode": "2afc",
            "correct": [True] * 30 + [False] * 10,
        }
    )
    row = realism_table(realism).iloc[0]
    assert row["detection_rate"] == 0.75 and row["ci_low"] > 0.5 and row["p_vs_chance"] < 0.01


def test_eligibility_requires_the_human_check_only_when_the_config_says_so():
    from align_core.experiments.config import ExperimentConfig
    from analysis.pretest import require_human_check

    eligibility = pd.DataFrame(
        {
            "video_id": ["v1", "v1", "v1", "v2"],
            "variant": ["baseline", "early_boost", "placebo", "placebo"],
            "eligible": [True, True, True, False],
            "exclusion_reason": [None, None, None, "manipulation check failed"],
        }
    )
    verdicts = pd.DataFrame(
        {"experiment_id": "exp", "variant": ["early_boost", "placebo"], "human_check": ["passed", "not passed"]}
    )
    plain = {"exp": ExperimentConfig("exp", variants=SPECS)}
    pd.testing.assert_frame_equal(require_human_check(eligibility, plain, verdicts), eligibility)
    strict = {"exp": ExperimentConfig("exp", variants=SPECS, extra={"require_human_check": True})}
    out = require_human_check(eligibility, strict, verdicts).set_index(["video_id", "variant"])
    assert out["eligible"].to_dict() == {
        ("v1", "baseline"): True,
        ("v1", "early_boost"): True,
        ("v1", "placebo"): False,
        ("v2", "placebo"): False,
    }
    assert out.loc[("v2", "placebo"), "exclusion_reason"] == (
        "manipulation check failed; human check not passed (experiment exp pretest)"
    )
    unrun = require_human_check(eligibility, strict, None).set_index(["video_id", "variant"])
    assert not unrun.loc[("v1", "early_boost"), "eligible"]
    assert "human check not run" in unrun.loc[("v1", "early_boost"), "exclusion_reason"]


def test_a_sample_counts_on_its_own_frame_and_k_neighbours_either_side():
    grid = VideoGrid.for_video(10, 16, 16, 64)
    counts = sample_counts(grid, [5, 0], [0.5, 0.1], [0.5, 0.1])
    maps = human_maps(counts, 1.0, temporal_k=2)
    assert np.flatnonzero(maps.reshape(10, -1).sum(axis=1) > 0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert maps[5].argmax() == np.ravel_multi_index((8, 8), (16, 16))  # frame 5 has only its own sample nearby
    assert np.allclose(maps[1:3].reshape(2, -1).sum(axis=1), 1.0)


def test_sessions_that_missed_an_attention_check_or_withdrew_are_left_out_of_the_check():
    from analysis.pretest import attentive_trials

    trials = pd.DataFrame({"study_id": "s", "session_id": ["a", "a", "b", "c"], "alignment": [0.1, 0.2, 0.3, 0.4]})
    sessions = pd.DataFrame(
        {
            "study_id": "s",
            "session_id": ["a", "b"],
            "attention_checks_passed": [2, 1],
            "attention_checks_shown": [2, 2],
        }
    )  # c withdrew: no longer collected
    assert attentive_trials(trials, sessions)["session_id"].tolist() == ["a", "a"]
    assert attentive_trials(trials, None).equals(trials)


def test_malformed_samples_are_kept_out_of_the_maps_not_fatal(pilot):
    data_dir, database, sim = pilot
    path = session_files(data_dir, sim.study_id)[0]
    record = {"kind": "cursor", "session_id": path.stem, "video_id": sim.videos[0], "variant": "baseline"}
    record |= {"trial_index": 0, "practice": False, "samples": [5, [0.1, "x", 0.5], [None, 0.5, 0.5], [0.1, 0.5, 0.5]]}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")  # no batch_id either: the line number stands in
    collect_pretest(data_dir, database)
    rows = _tables(database)["pretest_cursor"].query("batch_id.str.startswith('line-')", engine="python")
    assert rows["in_frame"].tolist() == [False, False, False, True]


@pytest.mark.parametrize("fps", [15.0, 24.0, 30000 / 1001, 60.0])
def test_a_frames_own_presentation_time_rounded_by_the_browser_lands_on_that_frame(tmp_path: Path, fps: float):
    """The page stamps samples with requestVideoFrameCallback's mediaTime: frame i's start i / fps,
    rounded to the microsecond by Chromium (0.133333 for frame 2 at 15 fps). A bare
    floor(t * fps) put a third of the frames on the one before."""
    sim = SimStudy(n_frames=600, fps=fps, videos=("vid_a",))
    write_participants(tmp_path, sim, participants=1)
    path = session_files(tmp_path, sim.study_id)[0]
    samples = [[round(i / fps, 6), 0.5, 0.5] for i in range(sim.n_frames)]  # as Chromium reports them
    variant = next(r for r in read_session_file(path).of_kind("cursor") if not r["practice"])["variant"]
    record = {"kind": "cursor", "session_id": path.stem, "batch_id": "f" * 32, "video_id": "vid_a"}
    record |= {"variant": variant, "trial_index": 0, "practice": False, "samples": samples}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    collect_pretest(tmp_path, tmp_path / "warehouse.duckdb")
    cursor = _tables(tmp_path / "warehouse.duckdb")["pretest_cursor"]
    rows = cursor[cursor["batch_id"] == "f" * 32]
    assert rows.sort_values("sample_index")["frame_index"].tolist() == list(range(sim.n_frames))
