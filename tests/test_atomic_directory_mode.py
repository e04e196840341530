"""Issue 21 item 11: a directory written through ``atomic_directory`` gets a normal mkdir's mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from align_core.io.atomic import atomic_directory, current_umask


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_directory_has_the_mode_of_a_plain_mkdir(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_directory(tmp_path / "variant_videos" / "clip") as staging:
            (staging / "baseline.mp4").write_bytes(b"x")
        (tmp_path / "plain").mkdir()
        replaced = tmp_path / "variant_videos" / "clip"
        with atomic_directory(replaced) as staging:  # a second write swaps the directory whole
            (staging / "baseline.mp4").write_bytes(b"y")
    finally:
        os.umask(old)
    assert _mode(replaced) == _mode(tmp_path / "plain") == 0o777 & ~umask
    assert (replaced / "baseline.mp4").read_bytes() == b"y"
