"""Issue 21 item 9 (first half): a CSV problem says how far it reaches, and the console agrees.

A byte that is not UTF-8 in one keyword row used to fail every video while the console called
the row "left out"; a missing column printed the same words. Now an undecodable row is one
unreadable row that blocks only its own video, and a problem of the whole file is named as
such, with every video it blocks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from align_assets.runner import report_inputs
from align_core.inputs.csv_rows import CsvFileError, CsvValidationError
from align_core.inputs.research_csvs import csv_problems, describe_csv_problems, read_keywords
from align_core.io.layout import DataLayout
from align_core.stages.catalog import run_catalog

HEADER = "_id,keyword_list[0]\n"


@pytest.fixture()
def two_videos(tmp_path: Path, shared_data: Path) -> DataLayout:
    layout = DataLayout(tmp_path / "data").ensure()
    clip = shared_data / "videos" / "fruit-and-vegetable-detection.mp4"
    for video_id in ("clip-a", "clip-b"):
        shutil.copyfile(clip, layout.videos_dir / f"{video_id}.mp4")
    return layout


def test_one_non_utf8_row_blocks_only_its_own_video(two_videos: DataLayout, capsys) -> None:
    layout = two_videos
    layout.keywords_csv.write_bytes(
        (HEADER + "clip-a,bottle\nclip-b,shoes\nother-video,cr\xe8me br\xfbl\xe9e\n").encode("latin-1")
    )
    for video_id in ("clip-a", "clip-b"):  # the unrelated row no longer fails these
        assert run_catalog(layout, video_id).catalog.keyword.raw in ("bottle", "shoes")
    with pytest.raises(CsvValidationError, match=r"line 4.*not UTF-8.*only video other-video is blocked"):
        read_keywords(layout.keywords_csv).keyword_for("other-video")
    problems = csv_problems(layout.keywords_csv)
    assert problems[["line", "video_id", "scope"]].values.tolist() == [[4, "other-video", "row"]]
    report_inputs("align-backfill", layout)
    assert "left out" not in capsys.readouterr().err  # the row belongs to a video; its own run says so


def test_a_non_utf8_id_cell_is_a_row_of_no_video_and_says_so(two_videos: DataLayout) -> None:
    layout = two_videos
    layout.keywords_csv.write_bytes((HEADER + "clip-a,bottle\ncl\xefp-b,shoes\n").encode("latin-1"))
    assert run_catalog(layout, "clip-a").catalog.keyword.raw == "bottle"
    lines = describe_csv_problems(csv_problems(layout.keywords_csv), ["clip-a", "clip-b"])
    assert lines[0] == "1 input CSV row(s) belong to no video and are left out:", lines
    assert any("line 3" in line and "not UTF-8" in line and "belongs to no video" in line for line in lines), lines


def test_a_missing_column_is_a_file_problem_that_names_every_blocked_video(two_videos: DataLayout, capsys) -> None:
    layout = two_videos
    layout.keywords_csv.write_text("id,keyword\nclip-a,bottle\n")
    with pytest.raises(CsvFileError, match="whole file cannot be used.*every video") as caught:
        run_catalog(layout, "clip-a")
    assert "missing column(s) ['_id', 'keyword_list[0]']" in str(caught.value)
    problems = csv_problems(layout.keywords_csv)
    assert problems["scope"].tolist() == ["file"]
    report_inputs("align-backfill", layout)
    err = capsys.readouterr().err
    assert "keywords.csv cannot be used at all" in err and "2 video(s): clip-a, clip-b" in err, err
    assert "left out" not in err and "belong to no video" not in err, err
