"""Fault suite: bad inputs and crashes through the real Dagster layer.

Every case materializes real assets in process (``dagster.materialize`` on an ephemeral
instance, a temporary data directory, real files from ``../shared/data`` and the demo corpus).
Failure messages are read from the step's own exception (``only_message``), the error a user
sees in the Dagster UI.
Each fault must (1) fail with a message that names the file / row / video and what is wrong,
(2) leave the rest of the graph working (another partition or file still materializes), and
(3) lose nothing stored before (earlier artifacts and table rows are byte- or row-identical).

======  ==========================================  ===========================================================
case    fault                                       expected outcome
======  ==========================================  ===========================================================
a       random bytes saved as ``.mp4``;             ``video_catalog`` fails for that partition only, naming the
        first third of a real mp4                   file and "not a readable video container"; a demo video
                                                    partition materializes in the same instance.
a'      first third of a *faststart* mp4            fails as truncated: the header declares 101 frames, only
        (moov atom before the media data)           31 can be read (found by this suite, fixed in probe_video).
a''     the same corrupt file, as ``make demo``     prints the platform's VideoError with the reason, not
        reports it (``failure_messages``)           PyAV's bare "Invalid data found" (fixed in failure_messages).
b       good video catalogued, then replaced by     the re-run fails naming the file; ``catalog.json``,
        garbage and re-run                          ``video.parquet``, ``scenes.parquet`` and the thumbnail are
                                                    byte-identical, no temp file is left, and the re-collected
                                                    ``videos`` table still holds the old row unchanged.
c       ``help.mkv`` (real clip, no audio track)    catalog metadata ``has_audio`` False; a no-audio clip of it
                                                    goes catalog -> attention -> masks (provided, "hands") ->
                                                    control -> plans -> ``variant_videos``: seven H.264 variants
                                                    + comparison, every one without an audio stream, no error.
d       zero-length scene; overlapping scenes in    each video's catalog fails: zero-length names
        ``alignment_score.csv``                     ``line N, column 'end_time'`` and "zero-length scene";
                                                    overlap names the CSV lines and "overlap by 0.500 s";
                                                    a third video still materializes.
e       keywords "", "shop now", "free shipping"    ``keyword_masks`` materializes all-empty masks with
                                                    ``skipped_reason`` (empty / call_to_action / non_visual);
                                                    ``variant_plans`` materializes ``skipped`` with the reason;
                                                    product videos in the same graph are planned normally.
f       partition keys ``../../etc``, ``a/b``;      ``DataLayout`` raises ``InvalidVideoIdError``; the
        files ``bad id.mp4``, ``a..b.mp4``,         materialization fails with that error and writes nothing
        ``..mp4``, ``7.2E+18.mp4`` in raw/videos    outside ``artifacts/``; ``new_video_sensor`` registers only
                                                    the valid file and logs why each visible bad file was
                                                    ignored (``..mp4`` is a hidden dotfile: ignored silently,
                                                    like atomic temp files); ``import_videos`` maps unsafe
                                                    stems to safe ids.
f'      ``bad id.mp4`` and ``bad-id.mp4`` imported  refused before anything is copied, naming both files
        together                                    (both would map to ``bad-id``; found by this suite, fixed).
g       training killed after its step-2            (exact resume of ``train_controlnet`` is proven in
        checkpoint                                  ``tests/test_diffusion_training.py::test_resume_ends_with_the
                                                    _same_weights...``.) Here through the ASSET: a re-run reuses
                                                    ``runs/<key>`` and the same sha256; after deleting the
                                                    step-4 checkpoint and the final export (a kill) the re-run
                                                    resumes from step-2 and ends with the same sha256.
h       exception inside ``atomic_path`` /          previous file / directory intact, no temp left behind;
        ``atomic_directory``; crash between the     crash between renames: no partial target, old tree complete
        two renames; SIGKILL of a process writing   under ``.old-*``; SIGKILL: target byte-identical, only
        a large file through ``atomic_path``        hidden ``.name.tmp-*`` files remain, readers ignore them.
i       A/B exports: clicks > impressions +         ``ab_results`` materializes; bad files go to ``rejected/``
        unknown variant; missing column; next to    with ``.errors.txt`` naming rows ("row 2 (line 3)") / the
        a good export                               missing column; the good one lands in ``done/`` and in the
                                                    table; rows stored before are unchanged.
======  ==========================================  ===========================================================
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from align_assets.definitions import all_assets
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_assets.resources import ScorerResource, default_resources
from align_assets.runner import failure_messages
from align_assets.sensors import new_video_sensor
from align_core.experiments.ab_results import REQUIRED_COLUMNS, scan_inbox
from align_core.inputs.ids import InvalidVideoIdError
from align_core.inputs.video_import import import_videos, video_ids_in_inbox
from align_core.io.arrays import save_mask_stack
from align_core.io.atomic import atomic_directory, atomic_path
from align_core.io.layout import DataLayout
from align_core.io.video_io import probe_video, read_frames, write_video
from align_core.perception.masks import load_keyword_masks
from align_demo.ab_simulator import simulate_ab_rows
from align_demo.corpus import ALIGNMENT_COLUMNS, generate_demo_corpus

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Per-video stages up to the plans, sped up for 144x256 demo clips (the procedure is unchanged).
PERCEPTION = [
    "video_catalog",
    "attention_maps",
    "keyword_masks",
    "control_tensors",
    "variant_plans",
    "protected_regions",
]
FAST_OPS = {
    "attention_maps": {"config": {"keyframe_stride": 12}},
    "variant_videos": {"config": {"keyframe_stride": 8, "calibration_frames": 2}},
}


def run(
    layout: DataLayout, instance: DagsterInstance, selection: list[str], key: str | None = None, ops: dict | None = None
):
    """Materialize ``selection`` (asset names) in process; never raises, returns the result."""
    wanted = set(selection)
    config = {**QUIET, "ops": {k: v for k, v in (ops or FAST_OPS).items() if k in wanted}}
    return materialize(
        all_assets,
        selection=[AssetKey(name) for name in selection],
        partition_key=key,
        instance=instance,
        resources=default_resources(data_dir=layout.root, profile="demo", scorer=ScorerResource(max_long_side=128)),
        raise_on_error=False,
        run_config=config,
    )


def only_message(result) -> str:
    """``<step>: <Class>: <message>`` of the platform's own exception of the one failed step.

    That is the first error under Dagster's step wrapper, not the deepest cause: a ``VideoError``
    raised ``from`` PyAV's error carries the file and the reason, PyAV's own error does not.
    """
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1, [e.step_key for e in failures]
    error = failures[0].step_failure_data.error
    while error is not None and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return f"{failures[0].step_key}: {error.cls_name}: {error.message.strip()}"


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def table_rows(layout: DataLayout, sql: str) -> list[tuple]:
    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# fixtures: one small demo corpus, copied into a fresh data directory per case
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data: Path):
    """Five 144x256 demo ads (about 4 s at 12 fps, three given scenes each, sound, masks)."""
    layout = DataLayout(tmp_path_factory.mktemp("corpus") / "data").ensure()
    made = generate_demo_corpus(
        layout,
        n_videos=5,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=144,
        height=256,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(3.75, 4.0),
    )
    return layout, made.video_ids


def fresh_layout(root: Path, corpus) -> tuple[DataLayout, list[str]]:
    base, ids = corpus
    layout = DataLayout(root / "data")
    shutil.copytree(base.raw_dir, layout.raw_dir)
    return layout.ensure(), ids


def instance_with(keys: list[str]) -> DagsterInstance:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, keys)
    return instance


@pytest.fixture(scope="module")
def graph(tmp_path_factory, corpus):
    """The perception chain and plans over the corpus, with three screened keywords (case e, g)."""
    layout, ids = fresh_layout(tmp_path_factory.mktemp("graph"), corpus)
    keywords = pd.read_csv(layout.keywords_csv, dtype=str, keep_default_na=False)
    screened = {ids[2]: "", ids[3]: "shop now", ids[4]: "free shipping"}
    keywords["keyword_list[0]"] = [
        screened.get(v, k) for v, k in zip(keywords["_id"], keywords["keyword_list[0]"], strict=False)
    ]
    keywords.to_csv(layout.keywords_csv, index=False)
    instance = instance_with(ids)
    results = {key: run(layout, instance, PERCEPTION, key) for key in ids}
    yield layout, ids, screened, instance, results
    instance.dispose()


# ---------------------------------------------------------------------------------------------
# a. corrupt and truncated videos
# ---------------------------------------------------------------------------------------------


def test_a_corrupt_and_truncated_videos_fail_alone(tmp_path: Path, corpus, shared_data: Path) -> None:
    layout, ids = fresh_layout(tmp_path, corpus)
    rng = np.random.default_rng(0)
    (layout.videos_dir / "garbage-upload.mp4").write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    real = (shared_data / "videos" / "fruit-and-vegetable-detection.mp4").read_bytes()
    (layout.videos_dir / "cut-upload.mp4").write_bytes(real[: len(real) // 3])
    with instance_with(["garbage-upload", "cut-upload", ids[0]]) as instance:
        for key in ("garbage-upload", "cut-upload"):
            message = only_message(run(layout, instance, ["video_catalog"], key))
            assert message.startswith("video_catalog: ")
            assert "VideoError" in message and f"{key}.mp4" in message, message
            assert "not a readable video container" in message, message
            assert not (layout.artifact_dir("video_catalog", key) / "catalog.json").exists()
        good = run(layout, instance, ["video_catalog"], ids[0])
        assert good.success
        assert good.asset_materializations_for_node("video_catalog")[0].metadata["frame_count"].value > 0


def _faststart_copy(source: Path, target: Path) -> Path:
    """Remux ``source`` with the moov atom first (as most downloaded ads are), no re-encoding."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return target


def test_a_truncated_faststart_video_is_reported(tmp_path: Path, corpus, shared_data: Path) -> None:
    layout, ids = fresh_layout(tmp_path, corpus)
    whole = _faststart_copy(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", tmp_path / "whole.mp4")
    assert probe_video(whole).frame_count == 101
    data = whole.read_bytes()
    (layout.videos_dir / "cut-faststart.mp4").write_bytes(data[: len(data) // 3])
    with instance_with(["cut-faststart"]) as instance:
        result = run(layout, instance, ["video_catalog"], "cut-faststart")
        assert not result.success, "a third of the video was catalogued as a complete video"
        assert "cut-faststart.mp4" in only_message(result) and "truncated" in only_message(result)


def test_a_failure_messages_report_the_platform_error(tmp_path: Path, corpus) -> None:
    layout, _ = fresh_layout(tmp_path, corpus)
    (layout.videos_dir / "garbage-upload.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    with instance_with(["garbage-upload"]) as instance:
        (message,) = failure_messages(run(layout, instance, ["video_catalog"], "garbage-upload"))
    assert "garbage-upload.mp4" in message and "not a readable video container" in message, message


# ---------------------------------------------------------------------------------------------
# b. a good video replaced by a corrupt one
# ---------------------------------------------------------------------------------------------


def test_b_replaced_by_corrupt_file_keeps_previous_outputs(tmp_path: Path, corpus) -> None:
    layout, ids = fresh_layout(tmp_path, corpus)
    victim, other = ids[0], ids[1]
    with instance_with([victim, other]) as instance:
        for key in (victim, other):
            assert run(layout, instance, ["video_catalog"], key).success
        assert run(layout, instance, ["videos", "scenes"]).success
        query = f"SELECT * FROM videos WHERE video_id = '{victim}'"
        row_before = table_rows(layout, query)
        scenes_before = table_rows(layout, f"SELECT * FROM scenes WHERE video_id = '{victim}' ORDER BY scene_number")
        out_dir = layout.artifact_dir("video_catalog", victim)
        before = files_in(out_dir)
        assert {"catalog.json", "video.parquet", "scenes.parquet"} <= set(before)

        video = layout.video_path(victim)
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(40_000))  # an upload that went wrong
        message = only_message(run(layout, instance, ["video_catalog"], victim))
        assert video.name in message and "not a readable video container" in message, message

        assert files_in(out_dir) == before  # byte-identical, nothing half-written, no temp file
        assert sorted(p.name for p in out_dir.iterdir()) == sorted(before)
        assert run(layout, instance, ["video_catalog"], other).success  # the rest goes on
        assert run(layout, instance, ["videos", "scenes"]).success
        assert table_rows(layout, query) == row_before and len(row_before) == 1
        assert (
            table_rows(layout, f"SELECT * FROM scenes WHERE video_id = '{victim}' ORDER BY scene_number")
            == scenes_before
        )
        assert table_rows(layout, "SELECT count(*) FROM videos") == [(2,)]


# ---------------------------------------------------------------------------------------------
# c. a video without audio
# ---------------------------------------------------------------------------------------------


def test_c_video_without_audio_flows_through_editing(tmp_path: Path, shared_data: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    shutil.copyfile(shared_data / "videos" / "help.mkv", layout.videos_dir / "real-help.mkv")
    # The same real pictures, shortened and downscaled so editing takes seconds: still no audio.
    frames = read_frames(layout.videos_dir / "real-help.mkv", 0, 16)
    small = np.stack([f[::4, ::4] for f in frames])  # 160x120
    write_video(layout.videos_dir / "help-short.mp4", small, 30)
    count, height, width = small.shape[:3]
    masks = np.zeros((count, height, width), bool)
    masks[:, 55:100, 45:115] = True  # the signing hands, drawn by hand
    save_mask_stack(layout.provided_mask_path("help-short"), masks)
    layout.keywords_csv.write_text("_id,keyword_list[0]\nreal-help,hands\nhelp-short,hands\n")

    with instance_with(["real-help", "help-short"]) as instance:
        real = run(layout, instance, ["video_catalog"], "real-help")
        assert real.success
        metadata = real.asset_materializations_for_node("video_catalog")[0].metadata
        assert metadata["has_audio"].value is False and metadata["frame_count"].value == 58

        result = run(layout, instance, [*PERCEPTION, "variant_videos"], "help-short")
        assert result.success, failure_messages(result)
        assert result.asset_materializations_for_node("variant_plans")[0].metadata["skipped"].value is False
    out = layout.artifact_dir("variant_videos", "help-short")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["variants"]) == 7
    for name in [*manifest["variants"], "comparison"]:
        probe = probe_video(out / f"{name}.mp4")
        assert probe.has_audio is False and probe.audio_codec is None, name
        assert (probe.video_codec, probe.frame_count) == ("h264", count), name
        if name != "comparison":
            assert (probe.width, probe.height) == (width, height), name


# ---------------------------------------------------------------------------------------------
# d. zero-length and overlapping scenes
# ---------------------------------------------------------------------------------------------


def test_d_bad_scene_rows_fail_their_video_only(tmp_path: Path, corpus) -> None:
    layout, ids = fresh_layout(tmp_path, corpus)
    table = pd.read_csv(layout.alignment_csv, dtype=str, keep_default_na=False)
    assert list(table.columns) == list(ALIGNMENT_COLUMNS)
    zero, overlap, fine = ids[0], ids[1], ids[2]
    line = lambda idx: idx + 2  # noqa: E731  (header is line 1)
    z = table.index[(table["video id"] == zero) & (table["Scene Number"] == "2")][0]
    table.loc[z, "end_time"] = table.loc[z, "start_time"]
    o2 = table.index[(table["video id"] == overlap) & (table["Scene Number"] == "2")][0]
    o3 = table.index[(table["video id"] == overlap) & (table["Scene Number"] == "3")][0]
    table.loc[o3, "start_time"] = str(float(table.loc[o2, "end_time"]) - 0.5)
    table.to_csv(layout.alignment_csv, index=False)

    with instance_with(ids) as instance:
        message = only_message(run(layout, instance, ["video_catalog"], zero))
        assert "alignment_score.csv" in message and f"line {line(z)}, column 'end_time'" in message, message
        assert "zero-length scene" in message

        message = only_message(run(layout, instance, ["video_catalog"], overlap))
        assert f"video {overlap}" in message and "alignment_score.csv" in message, message
        assert f"{line(o2)}, {line(o3)}" in message and "scenes 2 and 3 overlap by 0.500 s" in message

        assert run(layout, instance, ["video_catalog"], fine).success
        for key in (zero, overlap):
            assert not layout.artifact_dir("video_catalog", key).exists()


# ---------------------------------------------------------------------------------------------
# e. keywords that name nothing visible
# ---------------------------------------------------------------------------------------------


def test_e_screened_keywords_are_skipped_with_reasons(graph) -> None:
    layout, ids, screened, _instance, results = graph
    categories = {"": "empty", "shop now": "call_to_action", "free shipping": "non_visual"}
    for key, keyword in screened.items():
        result = results[key]
        assert result.success, failure_messages(result)
        masks_meta = result.asset_materializations_for_node("keyword_masks")[0].metadata
        reason = masks_meta["skipped_reason"].value
        assert reason.startswith(f"keyword screened ({categories[keyword]})"), reason
        assert masks_meta["frames_with_product"].value == 0
        stored = load_keyword_masks(layout.artifact_dir("keyword_masks", key) / "masks.npz")
        assert stored.skipped_reason == reason and stored.masks.shape[0] > 0 and not stored.masks.any()
        plans_meta = result.asset_materializations_for_node("variant_plans")[0].metadata
        assert plans_meta["skipped"].value is True and plans_meta["reason"].value == reason
        marker = json.loads((layout.artifact_dir("variant_plans", key) / "skipped.json").read_text())
        assert marker == {"video_id": key, "reason": reason}
    for key in set(ids) - set(screened):  # the product videos of the same graph are planned
        plans_meta = results[key].asset_materializations_for_node("variant_plans")[0].metadata
        assert plans_meta["skipped"].value is False
        assert (layout.artifact_dir("variant_plans", key) / "plans.json").exists()


# ---------------------------------------------------------------------------------------------
# f. ids that try to escape the data directory
# ---------------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("key", ["../../etc", "a/b", "..", "x/../../y"])
def test_f_layout_rejects_escaping_ids(tmp_path: Path, key: str) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    with pytest.raises(InvalidVideoIdError, match="no dots, slashes or spaces"):
        layout.artifact_dir("video_catalog", key)
    with pytest.raises(InvalidVideoIdError):
        layout.video_path(key)
    with pytest.raises(InvalidVideoIdError):
        layout.provided_mask_path(key)


def test_f_escaping_partition_fails_and_sensor_ignores_bad_names(tmp_path: Path, shared_data: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    real = shared_data / "videos" / "help.mkv"
    for name in ("good-clip.mkv", "bad id.mkv", "a..b.mkv", "..mkv", "7.2E+18.mkv"):
        shutil.copyfile(real, layout.videos_dir / name)
    (layout.videos_dir / "notes.txt").write_text("not a video")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with instance_with(["../../etc", "a/b", "good-clip"]) as instance:
        for key in ("../../etc", "a/b"):
            message = only_message(run(layout, instance, ["video_catalog"], key))
            assert "InvalidVideoIdError" in message and repr(key) in message, message
        after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
        assert after == before  # nothing written anywhere, in particular not outside artifacts/
        assert run(layout, instance, ["video_catalog"], "good-clip").success

    handler = _Collect()
    with (
        DagsterInstance.ephemeral() as instance,
        build_sensor_context(instance=instance, resources=default_resources(data_dir=layout.root)) as context,
    ):
        context.log.addHandler(handler)
        context.log.propagate = False  # collected here, not printed
        result = new_video_sensor(context)
    assert result.dynamic_partitions_requests[0].partition_keys == ["good-clip"]
    assert [r.partition_key for r in result.run_requests] == ["good-clip"]
    logged = "\n".join(handler.messages)
    for stem, why in (
        ("bad id", "is not allowed"),
        ("a..b", "is not allowed"),
        ("7.2E+18", "is in scientific notation"),
    ):
        assert f"ignored: file {stem}.mkv: video id '{stem}' {why}" in logged, logged
    assert "notes.txt: not a video file" in logged
    assert "..mkv" not in logged  # a dotfile is hidden (like atomic temp files) and skipped silently
    assert video_ids_in_inbox(layout)[0] == ["good-clip"]


def test_f_import_videos_maps_unsafe_stems_to_safe_ids(tmp_path: Path, shared_data: Path) -> None:
    inbox = tmp_path / "uploads"
    inbox.mkdir()
    real = shared_data / "videos" / "help.mkv"
    for name in ("my ad (final).mkv", "a..b.MKV", "x%2F..%2Fetc.mkv", "ünï cödé.mkv", ".hidden.mkv"):
        shutil.copyfile(real, inbox / name)
    layout = DataLayout(tmp_path / "data").ensure()
    registered = import_videos(inbox, layout)
    expected = ["a-b", "my-ad-final", "n-c-d", "x-2F-2Fetc"]  # the dotfile is not a video to import
    assert sorted(r.video_id for r in registered) == expected
    for entry in registered:
        assert entry.path.parent == layout.videos_dir and entry.path.name == f"{entry.video_id}.mkv"
        assert entry.path.read_bytes() == real.read_bytes()
    assert video_ids_in_inbox(layout) == (expected, [])
    assert not any(r.copied for r in import_videos(inbox, layout))  # idempotent


def test_f_import_videos_never_merges_two_files_into_one_id(tmp_path: Path, shared_data: Path) -> None:
    inbox = tmp_path / "uploads"
    inbox.mkdir()
    shutil.copyfile(shared_data / "videos" / "help.mkv", inbox / "bad id.mkv")
    shutil.copyfile(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", inbox / "bad-id.mp4")
    layout = DataLayout(tmp_path / "data").ensure()
    try:
        registered = import_videos(inbox, layout)
    except ValueError as exc:  # refusing, naming both files, is fine too
        assert "bad id.mkv" in str(exc) and "bad-id.mp4" in str(exc)
        return
    assert len({r.video_id for r in registered}) == 2
    for entry in registered:
        assert entry.path.read_bytes() == entry.source.read_bytes()
    assert len(video_ids_in_inbox(layout)[0]) == 2


# ---------------------------------------------------------------------------------------------
# g. a killed training run resumes (through the asset)
# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:random-alexnet")
def test_g_checkpoint_asset_resumes_its_run(graph) -> None:
    import torch

    layout, ids, screened, instance, _ = graph
    product = sorted(set(ids) - set(screened))[:2]
    tiny = {
        "controlnet_checkpoint": {
            "config": {
                "steps": 4,
                "batch_size": 2,
                "checkpoint_every": 2,
                "validate_every": 0,
                "warmup_steps": 1,
                "resolution": 32,
                "frame_stride": 8,
                "max_frames_per_video": 2,
                "val_fraction": 0.0,
                "keep_last": 3,
                "training_videos": product,
            }
        }
    }
    base = layout.artifact_dir("controlnet_checkpoint")
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    try:
        first = run(layout, instance, ["controlnet_checkpoint"], ops=tiny)
        assert first.success, failure_messages(first)
        sha = first.asset_materializations_for_node("controlnet_checkpoint")[0].metadata["checkpoint_sha256"].value
        (run_dir,) = (base / "runs").iterdir()
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]

        again = run(layout, instance, ["controlnet_checkpoint"], ops=tiny)  # same config and data: same run
        assert again.success
        assert (
            again.asset_materializations_for_node("controlnet_checkpoint")[0].metadata["checkpoint_sha256"].value == sha
        )
        assert [p.name for p in (base / "runs").iterdir()] == [run_dir.name]

        # A kill after the step-2 checkpoint: the step-4 checkpoint and the final export never happened.
        shutil.rmtree(run_dir / "checkpoints" / "step-00000004")
        shutil.rmtree(run_dir / "final")
        resumed = run(layout, instance, ["controlnet_checkpoint"], ops=tiny)
        assert resumed.success, failure_messages(resumed)
        metadata = resumed.asset_materializations_for_node("controlnet_checkpoint")[0].metadata
        assert metadata["checkpoint_sha256"].value == sha and metadata["steps"].value == 4
        state = json.loads((run_dir / "final" / "training_state.json").read_text())
        assert state["lineage"]["resumed_from"].endswith("step-00000002")
        assert json.loads((base / "current.json").read_text())["weights_sha256"] == sha
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# h. crashes inside atomic writes
# ---------------------------------------------------------------------------------------------


def test_h_exception_inside_atomic_writes_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "catalog.json"
    target.write_text('{"good": true}')
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half')
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{"good": true}' and [p.name for p in tmp_path.iterdir()] == ["catalog.json"]

    final = tmp_path / "final"
    final.mkdir()
    (final / "weights.bin").write_bytes(b"good weights")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_directory(final) as tmp:
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("crash mid-directory")
    assert files_in(final) == {"weights.bin": b"good weights"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json", "final"]


def test_h_crash_between_directory_renames_leaves_old_tree_whole(tmp_path: Path, monkeypatch) -> None:
    final = tmp_path / "final"
    final.mkdir()
    (final / "weights.bin").write_bytes(b"good weights")
    real_replace = os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old aside done, new not yet in: the process dies here
            raise KeyboardInterrupt("killed between renames")
        return real_replace(src, dst)

    monkeypatch.setattr("align_core.io.atomic.os.replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "weights.bin").write_bytes(b"new weights")
    monkeypatch.undo()
    assert not final.exists()  # no partial target ...
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(".final.old-")]
    assert files_in(aside) == {"weights.bin": b"good weights"}  # ... and the old tree complete beside it


WRITER = """
import sys, time
from align_core.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as handle:
        for _ in range(64):
            handle.write(b"y" * (1 << 20))
            handle.flush()
        time.sleep(120)  # still inside the block when the kill comes
"""


def test_h_sigkill_while_writing_leaves_previous_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = inbox / "export.csv"
    target.write_bytes(b"experiment_id,video_id\nexp-1,v1\n")
    before = target.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            temps = [p for p in inbox.iterdir() if p.name != "export.csv"]
            if temps and temps[0].stat().st_size >= 8 << 20:
                break
            assert child.poll() is None, "the writer exited before it was killed"
            time.sleep(0.02)
        else:
            pytest.fail("the writer never got 8 MB into its temporary file")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert target.read_bytes() == before
    leftovers = [p.name for p in inbox.iterdir() if p.name != "export.csv"]
    assert leftovers and all(name.startswith(".export.tmp-") and name.endswith(".csv") for name in leftovers)
    assert scan_inbox(inbox) == [target]  # readers never see the half-written temporary file


# ---------------------------------------------------------------------------------------------
# i. malformed A/B exports next to a good one
# ---------------------------------------------------------------------------------------------


def test_i_malformed_ab_exports_are_rejected_and_good_ones_land(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    videos = pd.DataFrame({"video_id": ["7228023352396972034", "real-help"], "industry": ["Beauty", "Home"]})
    rows = simulate_ab_rows(videos, seed=1, days=2, segments=("all",), impressions_per_arm=500, experiment_id="exp-old")
    rows.to_csv(layout.ab_inbox_dir / "old.csv", index=False)
    from align_core.experiments.config import ExperimentConfig, register_experiment_config

    for experiment in ("exp-old", "exp-new", "exp-bad"):  # exp-bad2 (a file missing a column) is not
        register_experiment_config(layout.warehouse_path, ExperimentConfig(experiment))
    with DagsterInstance.ephemeral() as instance:
        assert run(layout, instance, ["ab_results"]).success
        stored = sorted(table_rows(layout, "SELECT * FROM ab_results"))
        assert len(stored) == len(rows)

        new = simulate_ab_rows(
            videos, seed=2, days=1, segments=("all",), impressions_per_arm=500, experiment_id="exp-new"
        )
        new.to_csv(layout.ab_inbox_dir / "good.csv", index=False)
        bad = new.copy()
        bad["experiment_id"] = "exp-bad"
        bad.loc[1, "clicks"] = bad.loc[1, "impressions"] + 5
        bad.loc[2, "variant"] = "super_boost"
        bad.to_csv(layout.ab_inbox_dir / "bad-rows.csv", index=False)
        new.drop(columns=["conversions"]).assign(experiment_id="exp-bad2").to_csv(
            layout.ab_inbox_dir / "bad-columns.csv", index=False
        )

        result = run(layout, instance, ["ab_results"])
        assert result.success, failure_messages(result)
        metadata = result.asset_materializations_for_node("ab_results")[0].metadata
        assert metadata["rejected_files"].value == 2
        assert "bad-rows.csv" in metadata["rejections"].value

    rejected = layout.ab_inbox_dir / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == [
        "bad-columns.csv",
        "bad-columns.csv.errors.txt",
        "bad-rows.csv",
        "bad-rows.csv.errors.txt",
    ]
    errors = (rejected / "bad-rows.csv.errors.txt").read_text()
    clicks = int(bad.loc[1, "clicks"])
    assert f"bad-rows.csv: row 2 (line 3): clicks ({clicks}) > impressions ({int(bad.loc[1, 'impressions'])})" in errors
    assert "bad-rows.csv: row 3 (line 4): unknown variant 'super_boost'" in errors
    columns = (rejected / "bad-columns.csv.errors.txt").read_text()
    assert "missing required column(s) conversions" in columns
    assert (rejected / "bad-rows.csv").read_bytes() == bad.to_csv(index=False).encode()  # moved, not altered
    assert sorted(p.name for p in (layout.ab_inbox_dir / "done").iterdir()) == ["good.csv", "old.csv"]
    assert scan_inbox(layout.ab_inbox_dir) == []

    experiments = table_rows(layout, "SELECT experiment_id, count(*) FROM ab_results GROUP BY 1 ORDER BY 1")
    assert experiments == [("exp-new", len(new)), ("exp-old", len(rows))]
    assert sorted(table_rows(layout, "SELECT * FROM ab_results WHERE experiment_id = 'exp-old'")) == stored
    assert set(REQUIRED_COLUMNS) <= {r[0] for r in table_rows(layout, "DESCRIBE ab_results")}
