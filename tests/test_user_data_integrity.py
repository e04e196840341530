"""Nothing invented reaches a user's data (issue 21, items 1 and 2).

Simulated A/B results belong to the demo's own directory: the demo profile's definitions add
the simulated export only where the demo made the directory, and ``align-demo`` refuses any
directory holding inputs or outputs it did not create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from align_assets.resources import default_resources
from align_core.io.layout import DataLayout
from align_demo import cli as demo
from align_demo.corpus import generate_demo_corpus
from align_demo.definitions import build_definitions
from align_demo.provenance import DEMO_FILES, demo_made, foreign_inputs

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_EXPORT = "demo_ab_export"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def asset_names(data_dir: Path) -> set[str]:
    definitions = build_definitions(default_resources(data_dir=data_dir, profile="demo"))
    return {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_demo_corpus(root, n_videos=1, n_empty_keywords=0, n_cta_keywords=0, width=96, height=160, fps=6)
    return root


def test_the_corpus_generator_records_its_directory_as_the_demos(demo_dir: Path) -> None:
    layout = DataLayout(demo_dir)
    assert (layout.raw_dir / DEMO_FILES).is_file()
    assert demo_made(layout) and foreign_inputs(layout) == []


def test_a_corpus_record_without_the_demos_record_is_a_users_directory(demo_dir: Path, tmp_path: Path) -> None:
    """Item 2: a directory copied without dotfiles is no longer taken for the demo's."""
    copy = tmp_path / "copied"
    shutil.copytree(demo_dir, copy, ignore=shutil.ignore_patterns(".*"))
    layout = DataLayout(copy)
    assert not demo_made(layout)
    assert "raw/keywords.csv" in foreign_inputs(layout)


def test_a_record_that_does_not_vouch_for_the_corpus_is_not_the_demos(demo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "edited"
    shutil.copytree(demo_dir, copy)
    corpus = copy / "raw" / "demo_corpus.json"
    corpus.write_text(corpus.read_text().replace("{", "{ ", 1))
    assert not demo_made(DataLayout(copy))


def test_demo_refuses_a_directory_with_a_warehouse_but_no_raw(tmp_path: Path, capsys) -> None:
    """Item 2: the refusal looks past raw/ (a warehouse, an inbox, experiments)."""
    root = tmp_path / "user"
    (root / "inbox" / "ab_results").mkdir(parents=True)
    (root / "inbox" / "ab_results" / "export.csv").write_text("experiment_id\nmine\n")
    duckdb.connect(str(root / "warehouse.duckdb")).execute("create table ab_results as select 1 as impressions").close()
    before = snapshot(root)
    assert demo.main(["--data-dir", str(root), "--videos", "1", "--no-real-clips", "--no-real-size-ad"]) == 2
    err = capsys.readouterr().err
    assert "warehouse.duckdb" in err and "inbox" in err and "changes nothing" in err
    assert snapshot(root) == before


def test_demo_refuses_a_copied_demo_directory_and_keeps_its_csvs(demo_dir: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copied"
    shutil.copytree(demo_dir, copy, ignore=shutil.ignore_patterns(".*"))
    (copy / "raw" / "keywords.csv").write_text("_id,keyword_list[0]\nmine,shoe\n")
    before = snapshot(copy)
    assert demo.main(["--data-dir", str(copy), "--videos", "1", "--no-real-clips", "--no-real-size-ad"]) == 2
    assert "raw/keywords.csv" in capsys.readouterr().err
    assert snapshot(copy) == before


def test_demo_definitions_add_the_simulator_only_in_the_demos_directory(demo_dir: Path, tmp_path: Path) -> None:
    """Item 1: under the default (demo) profile a user's directory gets production's graph."""
    assert DEMO_EXPORT in asset_names(demo_dir)
    user = tmp_path / "ads"
    (user / "raw" / "videos").mkdir(parents=True)
    assert DEMO_EXPORT not in asset_names(user)


@pytest.mark.slow
def test_a_users_own_clip_gets_no_simulated_results(tmp_path: Path, shared_data: Path) -> None:
    """Item 1 end to end: one real clip, align-import, the default profile, align-backfill."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(shared_data / "videos" / "fruit-and-vegetable-detection.mp4", incoming / "fruit-belt.mp4")
    data = tmp_path / "ads"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGN_", "DAGSTER_"))}
    env["HF_HUB_OFFLINE"] = "1"
    bin_dir = Path(sys.executable).parent

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)

    imported = run(str(bin_dir / "align-import"), str(incoming), "--data-dir", str(data))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    (data / "raw" / "keywords.csv").write_text("_id,keyword_list[0]\nfruit-belt,apple\n")
    backfill = run(str(bin_dir / "align-backfill"), "--data-dir", str(data))
    output = backfill.stdout + backfill.stderr
    assert "demo_ab_export" not in output
    assert not any((data / "inbox" / "ab_results").glob("*.csv")), "a simulated export reached the user's inbox"
    assert not (data / "experiments").exists() or not any((data / "experiments").iterdir())
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        tables = {row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()}
        if "ab_results" in tables:
            assert con.execute("select count(*) from ab_results").fetchone()[0] == 0
    report = (data / "reports" / "report.html").read_text()
    assert "No A/B results to report" in report


def test_lpips_without_alexnet_weights_gives_the_same_values_in_every_instance(tmp_path: Path) -> None:
    """Item 10: the random backbone is seeded, so 'a fixed random-feature distance' is true."""
    import numpy as np
    import torch

    from align_core.stimuli.diffusion.lpips_alex import LPIPS

    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.random((1, 3, 64, 64), dtype=np.float32) * 2 - 1) for _ in range(2))
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match="random-alexnet"):
        first = LPIPS(tmp_path / "missing.pth")
    torch.manual_seed(2)  # a different global state must not matter
    with pytest.warns(UserWarning, match="random-alexnet"):
        second = LPIPS(tmp_path / "missing.pth")
    assert "seeded" in first.backbone_state
    assert torch.equal(first(a, b), second(a, b))


def test_atomic_directories_get_the_usual_mode(tmp_path: Path) -> None:
    """Item 11: variant_videos/<id>/ was 0700 (mkdtemp) where every other artifact is 0755."""
    from align_core.io.atomic import atomic_directory

    umask = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "variant_videos" / "v1") as building:
            (building / "baseline.mp4").write_bytes(b"x")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(umask)
    assert (tmp_path / "variant_videos" / "v1").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o755


def test_ab_plan_registers_nothing_when_a_variant_file_changed(tmp_path: Path, capsys) -> None:
    """Item 13: align-ab-plan checks every file before it registers the experiment or its plan."""
    import numpy as np

    from align_core.io.hashing import file_sha256
    from align_core.io.video_io import write_video
    from analysis.plan_cli import main

    data = tmp_path / "data"
    rows = []
    for variant in ("baseline", "early_boost"):
        path = data / "artifacts" / "variant_videos" / "v1" / f"{variant}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, np.zeros((6, 64, 48, 3), np.uint8), fps=12)
        rows.append(
            {"video_id": "v1", "variant": variant, "path": str(path.relative_to(data)), "sha256": file_sha256(path)}
        )
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        con.execute("CREATE TABLE variants (video_id VARCHAR, variant VARCHAR, path VARCHAR, sha256 VARCHAR)")
        con.executemany("INSERT INTO variants VALUES (?, ?, ?, ?)", [tuple(r.values()) for r in rows])
    (data / "artifacts" / "variant_videos" / "v1" / "early_boost.mp4").write_bytes(b"edited by hand")
    config = tmp_path / "exp.yaml"
    config.write_text(
        "experiment_id: plan-exp\nplanned_videos: 1\nplanned_impressions_per_arm: 1000\nplanned_days: 7\n"
    )
    assert main([str(config), "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert "nothing was registered" in err and "changed since it was rendered" in err
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        for table in ("analysis_plans", "experiments", "experiment_arms", "upload_manifest"):
            assert table not in tables or con.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    assert not (data / "experiments").exists() or not any((data / "experiments").iterdir())


def test_a_product_shown_between_the_sampling_grid_still_gives_training_samples(tmp_path: Path) -> None:
    """Item 12: masked frames 1-4 of 24 fell between the stride-6 grid (frames 0, 6, 12, 18)."""
    import numpy as np

    from align_core.io.video_io import write_video
    from align_core.perception.control import ControlTensors
    from align_core.stimuli.diffusion.training_data import samples_from_video

    frames = np.full((24, 32, 32, 3), 90, np.uint8)
    video = write_video(tmp_path / "short.mp4", frames, fps=12)
    masks = np.zeros((24, 32, 32), bool)
    masks[1:5, 8:20, 8:20] = True
    control = ControlTensors(masks=masks, attention=np.full((24, 32, 32), 0.5, np.float32))
    samples = samples_from_video("short", video, control, "bottle", stride=6)
    assert len(samples) == 1 and samples[0].control[0].any()  # frame 1, the first visible one


def test_a_checkpoint_failure_fails_no_run_whose_editor_never_reads_it() -> None:
    """Item 12: with the salience editor the checkpoint's failure is a note, with the ControlNet editor a failure."""
    from align_assets.resources import EditorResource, PlatformResource
    from align_assets.runner import split_unread_checkpoint

    messages = ["controlnet_checkpoint: no training samples: ...", "analysis_report: broken"]
    failed, notes = split_unread_checkpoint(
        messages, {"editor": EditorResource(editor="salience"), "platform": PlatformResource(profile="demo")}
    )
    assert failed == ["analysis_report: broken"] and notes == messages[:1]
    failed, notes = split_unread_checkpoint(
        messages, {"editor": EditorResource(editor="controlnet"), "platform": PlatformResource(profile="demo")}
    )
    assert failed == messages and notes == []


def _export(path: Path, simulated: str | None) -> Path:
    """A small native export: 4 videos x 2 arms, optionally with a ``simulated`` column."""
    import pandas as pd

    rows = []
    for v in range(4):
        for arm, clicks in (("baseline", 20), ("early_boost", 26)):
            rows.append(
                {
                    "experiment_id": "sim-exp",
                    "video_id": f"v{v}",
                    "variant": arm,
                    "date": "2026-11-02",
                    "segment": "all",
                    "impressions": 1000,
                    "clicks": clicks + v,
                    "conversions": 2,
                    "spend": 5.0,
                    "watch_time_s_sum": 4000.0,
                }
            )
    frame = pd.DataFrame(rows)
    if simulated is not None:
        frame["simulated"] = simulated
    frame.to_csv(path, index=False)
    return path


def test_simulated_rows_are_labelled_in_the_warehouse_tables_and_report(tmp_path: Path) -> None:
    """Item 1: every simulated row, analysis table and report says so (column and banner)."""
    from align_core.experiments.ab_results import ingest_export
    from analysis.report import build_report

    database = tmp_path / "warehouse.duckdb"
    report = ingest_export(
        _export(tmp_path / "sim.csv", "true"), database, check_catalog=False, move=False, register=True
    )
    assert report.ok, report.errors
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select bool_and(simulated) from ab_results").fetchone()[0] is True
    built = build_report(database, tmp_path / "reports")
    page = (tmp_path / "reports" / "report.html").read_text()
    assert "SIMULATED DATA" in page and "sim-exp" in page
    assert "SIMULATED DATA" in (tmp_path / "reports" / "headline.md").read_text()
    assert built.tables["analysis_lift"]["simulated"].all()


def test_real_rows_are_not_labelled_and_a_bad_flag_is_refused(tmp_path: Path) -> None:
    from align_core.experiments.ab_results import ingest_export
    from analysis.report import build_report

    database = tmp_path / "warehouse.duckdb"
    assert ingest_export(
        _export(tmp_path / "real.csv", None), database, check_catalog=False, move=False, register=True
    ).ok
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select bool_or(simulated) from ab_results").fetchone()[0] is False
    build_report(database, tmp_path / "reports")
    assert "SIMULATED DATA" not in (tmp_path / "reports" / "report.html").read_text()
    refused = ingest_export(
        _export(tmp_path / "bad.csv", "maybe"), database, check_catalog=False, move=False, register=True
    )
    assert not refused.ok and any("simulated 'maybe'" in e for e in refused.errors)
