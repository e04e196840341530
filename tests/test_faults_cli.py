"""Fault suite, issue 15: what the command-line tools do with a user's own directory and odd arguments.

- item 2: ``align-demo --data-dir DIR`` on a directory holding the user's own inputs refuses,
  names them, and changes nothing; its own directory it may rebuild.
- item 13: ``align-demo --videos 1`` builds a one-video demo instead of a raw ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from align_core.io.layout import DataLayout
from align_demo import cli as demo
from align_demo.provenance import foreign_inputs, record_demo_inputs


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_refuses_a_directory_with_user_inputs(tmp_path: Path, shared_data: Path, capsys) -> None:
    layout = DataLayout(tmp_path / "mine").ensure()
    layout.keywords_csv.write_text("_id,keyword_list[0]\nmy-ad,bottle\n")
    layout.alignment_csv.write_text("video id,Scene Number\nmy-ad,1\n")
    (layout.videos_dir / "my-ad.mp4").write_bytes(
        (shared_data / "videos" / "fruit-and-vegetable-detection.mp4").read_bytes()
    )
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
    record_demo_inputs(layout)
    assert foreign_inputs(layout) == []
    layout.keywords_csv.write_text(layout.keywords_csv.read_text() + "extra-ad,shoe\n")
    assert foreign_inputs(layout) == ["raw/keywords.csv"]


@pytest.mark.parametrize("videos", ["0", "-3"])
def test_demo_with_no_videos_says_so(tmp_path: Path, videos: str, capsys) -> None:
    status = demo.main(["--data-dir", str(tmp_path / "d"), "--videos", videos, "--no-real-clips"])
    assert status == 2
    assert "at least 1 video" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# items 8, 10, 11: every input left out is listed with its reason, readably
# ---------------------------------------------------------------------------------------------

import logging  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import duckdb  # noqa: E402
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize  # noqa: E402

from align_assets.definitions import all_assets  # noqa: E402
from align_assets.partitions import VIDEO_PARTITIONS_NAME  # noqa: E402
from align_assets.resources import default_resources  # noqa: E402
from align_assets.sensors import new_video_sensor  # noqa: E402
from align_demo.corpus import generate_demo_corpus  # noqa: E402

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def spreadsheet_ids(tmp_path: Path, shared_data: Path):
    """One demo video plus a row in each CSV whose id a spreadsheet turned into 7.22E+18."""
    layout = DataLayout(tmp_path / "data").ensure()
    made = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=144,
        height=256,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(3.75, 4.0),
    )
    with layout.keywords_csv.open("a") as handle:
        handle.write("7.22E+18,bottle\n")
    lines = layout.alignment_csv.read_text().splitlines()
    first = lines[1].split(",")
    lines.append(",".join(["7.22E+18", *first[1:]]))
    layout.alignment_csv.write_text("\n".join(lines) + "\n")
    return layout, made.video_ids[0], len(lines)


def test_csv_rows_without_a_video_reach_table_catalog_sensor_and_console(spreadsheet_ids, capsys) -> None:
    layout, key, bad_line = spreadsheet_ids
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, [key])
        resources = default_resources(data_dir=layout.root, profile="demo")
        result = materialize(
            all_assets,
            selection=[AssetKey("video_catalog"), AssetKey("csv_problems")],
            partition_key=key,
            instance=instance,
            resources=resources,
            run_config=QUIET,
        )
        assert result.success
        catalog = result.asset_materializations_for_node("video_catalog")[0].metadata
        assert catalog["csv_problems_without_video"].value == 2
        assert "7.22E+18" in catalog["csv_problems_without_video_list"].value

    con = duckdb.connect(str(layout.warehouse_path), read_only=True)
    rows = con.execute(
        'SELECT file, line, "column", value, problem FROM csv_problems WHERE video_id IS NULL ORDER BY file'
    ).fetchall()
    con.close()
    assert [(Path(f).name, line, column, value) for f, line, column, value, _ in rows] == [
        ("alignment_score.csv", bad_line, "video id", "7.22E+18"),
        ("keywords.csv", 3, "_id", "7.22E+18"),
    ]
    assert all("scientific notation" in problem for *_, problem in rows)

    handler = _Collect()
    with (
        DagsterInstance.ephemeral() as instance,
        build_sensor_context(instance=instance, resources=default_resources(data_dir=layout.root)) as context,
    ):
        context.log.addHandler(handler)
        context.log.propagate = False
        new_video_sensor(context)
    logged = "\n".join(handler.messages)
    assert "keywords.csv line 3, column '_id', value '7.22E+18'" in logged, logged

    demo.report_inputs("align-backfill", layout)
    err = capsys.readouterr().err
    assert "2 input CSV row(s) belong to no video" in err
    assert f"alignment_score.csv line {bad_line}, column 'video id', value '7.22E+18'" in err


def test_import_lists_every_file_it_leaves_out(tmp_path: Path, shared_data: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    shutil.copyfile(shared_data / "videos" / "help.mkv", folder / "my ad.mkv")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / ".hidden.mp4").write_bytes((shared_data / "videos" / "help.mkv").read_bytes())
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((32, 32, 3), np.uint8))
    (folder / "poster.mp4").write_bytes((tmp_path / "x.png").read_bytes())
    (folder / "notes.txt").write_text("brief")
    data = tmp_path / "data"
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "align_assets.register", str(folder), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped empty.mp4: file is empty (0 bytes)" in done.stderr
    assert "skipped .hidden.mp4: hidden file" in done.stderr
    assert "skipped poster.mp4: is a PNG image" in done.stderr
    assert "skipped notes.txt: not a video file" in done.stderr
    assert "my-ad" in done.stdout and "copied" in done.stdout and "4 file(s) skipped" in done.stdout
    assert sorted(p.name for p in (data / "raw" / "videos").iterdir()) == ["my-ad.mkv"]
    assert "BackfillPolicies" not in done.stderr and "BetaWarning" not in done.stderr


def test_backfill_lists_unsafe_file_names(tmp_path: Path, shared_data: Path, capsys) -> None:
    from align_assets import backfill

    layout = DataLayout(tmp_path / "data").ensure()
    shutil.copyfile(shared_data / "videos" / "help.mkv", layout.videos_dir / "my ad.mkv")
    shutil.copyfile(shared_data / "videos" / "help.mkv", layout.videos_dir / "good.mkv")
    assert backfill.main(["--data-dir", str(layout.root), "--print-keys"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "good"
    assert "ignored file: file my ad.mkv: video id 'my ad' is not allowed" in err


def test_csv_row_problems_are_a_readable_list_on_the_console(tmp_path: Path, shared_data: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    made = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=144,
        height=256,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(3.75, 4.0),
    )
    lines = layout.alignment_csv.read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = "7"  # attention_proportion outside [0, 1]
    lines[1] = ",".join(cells)
    layout.alignment_csv.write_text("\n".join(lines) + "\n")
    import warnings

    with DagsterInstance.ephemeral() as instance, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        demo.quiet_dagster_warnings()
        failures = demo.materialize_everything(
            made.video_ids,
            instance=instance,
            resources=default_resources(data_dir=layout.root, profile="demo"),
            assets=["video_catalog"],
            log=lambda *_: None,
        )
    message = failures[made.video_ids[0]][0]
    assert "line 2, column 'attention_proportion', value '7': is outside [0.0, 1.0]" in message
    assert not [w for w in caught if "BackfillPolic" in str(w.message)]


def test_nothing_edited_says_what_to_do(tmp_path: Path) -> None:
    from align_demo.assets import nothing_edited  # the demo export explains an empty experiment

    layout = DataLayout(tmp_path / "data").ensure()
    skipped = layout.artifact_dir("variant_plans", "ad-1") / "skipped.json"
    skipped.parent.mkdir(parents=True)
    skipped.write_text('{"video_id": "ad-1", "reason": "keyword screened (call_to_action): shop now"}')
    message = nothing_edited(layout)
    assert "1 video(s) were skipped for editing (ad-1: keyword screened" in message
    assert "raw/keywords.csv" in message


def test_lpips_weights_are_looked_up_under_the_data_directory(tmp_path: Path, monkeypatch) -> None:
    import torch

    from align_core.stages.checkpoint import alexnet_weights
    from align_core.stimuli.diffusion.lpips_alex import ALEXNET_ENV, LPIPS, AlexNetFeatures

    monkeypatch.delenv(ALEXNET_ENV, raising=False)
    data = tmp_path / "elsewhere" / "data"
    weights = data / "models" / "alexnet" / "alexnet-owt-7be5be79.pth"
    weights.parent.mkdir(parents=True)
    # A state dict in torchvision's layout (random values: this checks where it is found, not quality).
    torch.save(AlexNetFeatures().state_dict(), weights)
    monkeypatch.chdir(tmp_path)  # the working directory has no data/models
    found = alexnet_weights(DataLayout(data))
    assert found == weights
    assert LPIPS(found).pretrained


def test_a_moved_data_directory_still_finds_its_inputs(tmp_path: Path, shared_data: Path) -> None:
    """Item 3: artifacts store paths relative to the data directory."""
    layout = DataLayout(tmp_path / "before" / "data").ensure()
    made = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=144,
        height=256,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        duration_range_s=(3.75, 4.0),
    )
    key = made.video_ids[0]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, [key])
        assert materialize(
            all_assets,
            selection=[AssetKey("video_catalog")],
            partition_key=key,
            instance=instance,
            resources=default_resources(data_dir=layout.root, profile="demo"),
            run_config=QUIET,
        ).success
        catalog_json = (layout.artifact_dir("video_catalog", key) / "catalog.json").read_text()
        assert str(tmp_path) not in catalog_json
        moved = DataLayout(tmp_path / "after" / "data")
        moved.root.parent.mkdir()
        shutil.move(layout.root, moved.root)
        result = materialize(
            all_assets,
            selection=[AssetKey("keyword_masks")],
            partition_key=key,
            instance=instance,
            resources=default_resources(data_dir=moved.root, profile="demo"),
            run_config=QUIET,
            raise_on_error=False,
        )
        assert result.success, demo.failure_messages(result)


def test_checkpoint_without_training_samples_says_what_to_do(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets,
            selection=[AssetKey("controlnet_checkpoint")],
            instance=instance,
            raise_on_error=False,
            resources=default_resources(data_dir=layout.root, profile="demo"),
            run_config={**QUIET, "ops": {"controlnet_checkpoint": {"config": {"training_videos": ["not-catalogued"]}}}},
        )
    (message,) = demo.failure_messages(result)
    assert "no training samples" in message and "raw/keywords.csv" in message and "salience editor" in message
