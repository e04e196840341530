"""Issue 21 item 8: input video files as users have them (cut short, phone suffixes, odd names).

Every case uses real files from ``../shared/data/videos`` and the real probe / layout / sensor:
a truncated file is called truncated (never "variable frame rate ... re-encode it", which would
make a shorter ad), ``IMG_0001.MOV`` is found from its id, a name with spaces around it and two
files with one stem are listed as ignored with the reason rather than registered without a file
or resolved by a silent pick.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest
from dagster import DagsterInstance, build_sensor_context

from align_assets.resources import default_resources
from align_assets.sensors import new_video_sensor
from align_core.inputs.video_import import import_videos, video_ids_in_inbox
from align_core.io.layout import AmbiguousVideoError, DataLayout
from align_core.io.video_io import VideoError, probe_video
from align_core.stages.catalog import run_catalog


def _faststart_copy(source: Path, target: Path) -> Path:
    """Remux every video and audio packet with the index (moov) first, as downloaded ads are."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        mapped = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(*streams):
            if packet.dts is None:
                continue
            packet.stream = mapped[packet.stream.index]
            out.mux(packet)
    return target


@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_a_cut_faststart_mp4_with_b_frames_is_truncated_not_variable_rate(
    tmp_path: Path, shared_data: Path, fraction: float
) -> None:
    whole = _faststart_copy(shared_data / "videos" / "intel_bottle-detection.mp4", tmp_path / "whole.mp4")
    assert probe_video(whole).frame_count == 1189
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(VideoError) as caught:
        probe_video(cut)
    assert "is truncated" in caught.value.reason and "cut short" in caught.value.reason, caught.value.reason
    assert "variable frame rate" not in caught.value.reason and "re-encode it at" not in caught.value.reason


def test_a_cut_matroska_file_is_truncated_not_variable_rate(tmp_path: Path, shared_data: Path) -> None:
    data = (shared_data / "videos" / "help.mkv").read_bytes()
    assert probe_video(shared_data / "videos" / "help.mkv").frame_count == 58
    for fraction in (0.3, 0.6, 0.9):
        cut = tmp_path / f"cut{int(fraction * 100)}.mkv"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(VideoError, match="is truncated: its header declares 1.93 s"):
            probe_video(cut)


def _layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data").ensure()


def test_an_upper_case_suffix_is_found_from_its_id_and_catalogued(tmp_path: Path, shared_data: Path) -> None:
    layout = _layout(tmp_path)
    shutil.copyfile(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", layout.videos_dir / "IMG_0001.MOV")
    assert video_ids_in_inbox(layout) == (["IMG_0001"], [])
    assert layout.video_path("IMG_0001").name == "IMG_0001.MOV"
    result = run_catalog(layout, "IMG_0001")
    assert result.catalog.probe.frame_count == 101
    # Importing the same phone file again updates that file instead of adding IMG_0001.mov beside it.
    inbox = tmp_path / "phone"
    inbox.mkdir()
    shutil.copyfile(shared_data / "videos" / "intel_bottle-detection.mp4", inbox / "IMG_0001.MOV")
    (registered,) = import_videos(inbox, layout)
    assert registered.copied and [p.name for p in layout.video_files("IMG_0001")] == ["IMG_0001.MOV"]


def test_names_that_change_under_stripping_and_shared_stems_are_ignored_with_reasons(
    tmp_path: Path, shared_data: Path
) -> None:
    layout = _layout(tmp_path)
    clip = shared_data / "videos" / "fruit-and-vegetable-detection.mp4"
    for name in (" lead.mp4", "dup.mp4", "dup.mkv", "good.mp4"):
        shutil.copyfile(clip, layout.videos_dir / name)
    ids, skipped = video_ids_in_inbox(layout)
    assert ids == ["good"]
    assert any("' lead.mp4'" in line and "spaces" in line and "'lead.mp4'" in line for line in skipped), skipped
    assert any("dup.mkv and dup.mp4" in line and "'dup'" in line for line in skipped), skipped
    with pytest.raises(AmbiguousVideoError, match="dup.mkv and dup.mp4"):
        layout.video_path("dup")
    with pytest.raises(FileNotFoundError):
        layout.video_path("lead")
    # The sensor registers only the video it can find again, and logs the rest as ignored.
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources=default_resources(data_dir=layout.root))
        result = new_video_sensor(context)
        assert result.dynamic_partitions_requests[0].partition_keys == ["good"]
