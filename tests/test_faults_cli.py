"""Fault suite, issue 15: what the command-line tools do with a user's own directory and odd arguments.

- item 2: ``align-demo --data-dir DIR`` on a directory holding the user's own inputs refuses,
  names them, and changes nothing; its own directory it may rebuild.
- item 13: ``align-demo --videos 1`` builds a one-video demo instead of a raw ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from align_assets import demo
from align_core.layout import DataLayout


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_refuses_a_directory_with_user_inputs(tmp_path: Path, shared_data: Path, capsys) -> None:
    layout = DataLayout(tmp_path / "mine").ensure()
    layout.keywords_csv.write_text("_id,keyword_list[0]\nmy-ad,bottle\n")
    layout.alignment_csv.write_text("video id,Scene Number\nmy-ad,1\n")
    (layout.videos_dir / "my-ad.mp4").write_bytes((shared_data / "videos" / "fruit-and-vegetable-detection.mp4").read_bytes())
    layout.warehouse_path.write_bytes(b"user warehouse")
    before = _snapshot(layout.root)
    status = demo.main(["--data-dir", str(layout.root), "--videos", "1", "--no-real-clips"])
    assert status == 2
    err = capsys.readouterr().err
    assert "raw/keywords.csv" in err and "raw/alignment_score.csv" in err and "raw/videos/my-ad.mp4" in err
    assert "changes nothing" in err and "align-backfill" in err
    assert _snapshot(layout.root) == before


def test_demo_may_rebuild_its_own_directory_but_not_edited_inputs(tmp_path: Path, shared_data: Path) -> None:
    layout = DataLayout(tmp_path / "demo").ensure()
    ids = demo.build_corpus(layout, 1, 7, shared_data, include_real=False)
    assert len(ids) == 1  # item 13: one video is a valid demo
    demo.record_demo_inputs(layout)
    assert demo.foreign_inputs(layout) == []
    layout.keywords_csv.write_text(layout.keywords_csv.read_text() + "extra-ad,shoe\n")
    assert demo.foreign_inputs(layout) == ["raw/keywords.csv"]


@pytest.mark.parametrize("videos", ["0", "-3"])
def test_demo_with_no_videos_says_so(tmp_path: Path, videos: str, capsys) -> None:
    status = demo.main(["--data-dir", str(tmp_path / "d"), "--videos", videos, "--no-real-clips"])
    assert status == 2
    assert "at least 1 video" in capsys.readouterr().err
