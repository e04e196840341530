"""Scenes to frames: centre-time mapping, and gaps/overlaps/outside reported, never shifted."""

import pandas as pd
import pytest

from align_core.inputs.scenes import detect_scenes, map_scenes_to_frames


def scenes(*spans: tuple[float, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"scene_number": i, "start_time": a, "end_time": b} for i, (a, b) in enumerate(spans, start=1)]
    )


def test_contiguous_scenes_tile_the_frames() -> None:
    mapping = map_scenes_to_frames(scenes((0, 2.0), (2.0, 3.5), (3.5, 5.0)), fps=12, frame_count=60)
    assert mapping.frame_ranges() == [(0, 24), (24, 42), (42, 60)]
    assert mapping.issues == []


def test_two_decimal_times_round_to_frames() -> None:
    # 29.97 fps times written with two decimals: within half a frame is consistent.
    mapping = map_scenes_to_frames(scenes((0, 1.33), (1.33, 2.0)), fps=29.97, frame_count=60)
    assert mapping.frame_ranges() == [(0, 40), (40, 60)] and mapping.issues == []


@pytest.mark.parametrize(
    ("spans", "kind"),
    [
        (((0, 2.0), (2.5, 5.0)), "gap"),
        (((0, 2.5), (2.0, 5.0)), "overlap"),
        (((0, 2.0), (2.0, 6.0)), "outside_video"),
        (((0.5, 2.0), (2.0, 5.0)), "uncovered_start"),
        (((0, 2.0), (2.0, 4.0)), "uncovered_end"),
    ],
)
def test_mismatches_are_reported(spans, kind) -> None:
    mapping = map_scenes_to_frames(scenes(*spans), fps=12, frame_count=60)
    assert kind in [issue.kind for issue in mapping.issues]
    # Nothing is shifted: the given times stay as given.
    assert mapping.scenes["start_time"].tolist() == [a for a, _ in spans]


def test_detected_scenes_on_real_clip(shared_data) -> None:
    mapping = detect_scenes(shared_data / "videos" / "help.mkv", fps=30, frame_count=58)
    assert mapping.source == "detected"
    assert mapping.frame_ranges()[0][0] == 0 and mapping.frame_ranges()[-1][1] == 58
