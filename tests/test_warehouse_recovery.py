"""A damaged warehouse is caught on open and rebuilt whole; readers never block writers (issue 21, items 4, 7).

- Item 4: a warehouse file cut short used to be accepted (tables rebuilt "ok"); later steps failed
  with "Corrupt database file: computed checksum" and the experiment registry was lost. Now the
  next open names the file, moves it aside to ``warehouse.corrupt-<time>.duckdb`` and gives the
  rebuild command; ``align-warehouse rebuild`` restores every table, equal row for row (counts and
  checksums), the registry included, from artifacts, the A/B archive and ``experiments/*.json``.
- Item 7: a ``duckdb.connect(path, read_only=True)`` held in another process made every table
  write fail after ~34 s with DuckDB's raw lock error. Now the write succeeds at once (it writes a
  copy and swaps it in; the reader keeps its snapshot), and a read-write connection held elsewhere
  is named by PID within a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import align_assets.production  # noqa: F401  (registers every collected table)
from align_assets.warehouse_cli import main as warehouse_main
from align_assets.warehouse_tables import COLLECTED_TABLES
from align_core.experiments.ab_results import ingest_export, register_experiment
from align_core.experiments.config import ExperimentConfig
from align_core.experiments.upload_manifest import build_upload_manifest
from align_core.io.layout import DataLayout
from align_core.io.video_io import file_sha256, write_video
from align_core.io.warehouse import WarehouseBusyError, WarehouseCorruptError, read_connection
from align_core.io.warehouse_guard import table_checksums
from align_core.stages.catalog import write_csv_problems
from align_core.stimuli.plans import DEFAULT_VARIANTS
from align_demo.ab_simulator import simulate_ab_export
from analysis.preregistration import register_plan

VIDEO_IDS = ("7228023352396972034", "v2")
THREE = tuple(s for s in DEFAULT_VARIANTS if s.name in ("baseline", "early_boost", "placebo"))


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _artifacts(layout: DataLayout) -> None:
    """Per-video artifacts as the stages write them: catalog rows, scenes, variants and verdicts."""
    frames = np.zeros((6, 32, 24, 3), np.uint8)
    for i, vid in enumerate(VIDEO_IDS):
        _write_parquet(
            layout.artifact("video_catalog", "video_row", vid),
            pd.DataFrame([{"video_id": vid, "industry": ["Beauty", "Home"][i], "fps": 12.0, "frames": 6}]),
        )
        scenes = pd.DataFrame({"video_id": [vid, vid], "scene_number": [1, 2], "start_frame": [0, 3]})
        _write_parquet(layout.artifact("video_catalog", "scenes", vid), scenes)
        rows, verdicts = [], []
        for j, spec in enumerate(THREE):
            frames[:] = 40 * i + 20 * j
            video = write_video(layout.variant_video(vid, spec.name), frames, 12)
            sha = file_sha256(video)
            rows.append(
                {"video_id": vid, "variant": spec.name, "path": str(video.relative_to(layout.root)), "sha256": sha}
            )
            verdicts.append(
                {
                    "video_id": vid,
                    "variant": spec.name,
                    "checked_sha256": sha,
                    "eligible": True,
                    "exclusion_reason": None,
                }
            )
        _write_parquet(layout.artifact("variant_videos", "rows", vid), pd.DataFrame(rows))
        _write_parquet(layout.artifact("variant_quality", "eligibility", vid), pd.DataFrame(verdicts))


def _populated(tmp_path: Path) -> DataLayout:
    """A data directory used as a researcher would: tables collected, two experiments registered,
    a plan and an upload manifest filed, two exports (one restating the other's days) ingested."""
    layout = DataLayout(tmp_path / "data").ensure()
    _artifacts(layout)
    db = layout.warehouse_path
    for spec in COLLECTED_TABLES.values():
        spec.collect(layout, db)
    write_csv_problems(layout, db)
    experiments = layout.root / "experiments"
    config = ExperimentConfig("exp-a", THREE, name="Spring", planned_videos=2, planned_days=3)
    register_plan(config, db, experiments)
    build_upload_manifest(db, "exp-a", experiments)
    register_experiment(db, "exp-b", {"baseline": 0.5, "early_boost": 0.5}, name="Planned only")
    videos = pd.DataFrame({"video_id": list(VIDEO_IDS), "industry": ["Beauty", "Home"]})
    for seed in (1, 2):  # the same name twice: done/ keeps the second as e.<sha12>.csv
        export = simulate_ab_export(
            videos, layout.ab_inbox_dir / "e.csv", seed=seed, days=2 + seed, segments=("all",),
            impressions_per_arm=500, experiment_id="exp-a", variants=THREE,
        )  # fmt: skip
        assert ingest_export(export, db).ok
        time.sleep(0.02)
    return layout


def _tables(db: Path) -> dict[str, tuple[int, int]]:
    with read_connection(db) as con:
        # analysis_* (the report's estimates) are recomputed by the report; analysis_plans is registry
        sums = table_checksums(con).items()
        return {t: v for t, v in sums if not t.startswith("analysis_") or t == "analysis_plans"}


@pytest.mark.slow
def test_truncated_warehouse_is_moved_aside_and_rebuilt_equal(tmp_path: Path, capsys) -> None:
    layout = _populated(tmp_path)
    db = layout.warehouse_path
    before = _tables(db)
    assert before["ab_results"][0] > 0 and before["experiments"][0] == 2 and before["upload_manifest"][0] == 6
    assert {"experiment_configs", "experiment_arms", "experiment_variants", "analysis_plans"} <= set(before)
    assert sorted(p.name for p in (layout.root / "experiments").glob("*.experiment.json")) == [
        "exp-a.experiment.json",
        "exp-b.experiment.json",
    ]
    with open(db, "r+b") as handle:  # cut short, as a full disk or an interrupted copy leaves it
        handle.truncate(db.stat().st_size - 1000)

    with pytest.raises(WarehouseCorruptError) as caught:  # the next table rebuild, as the asset runs it
        COLLECTED_TABLES["videos"].collect(layout, db)
    message = str(caught.value)
    aside = caught.value.aside
    assert aside is not None and aside.exists() and aside.name.startswith("warehouse.corrupt-")
    assert str(db) in message and str(aside) in message
    assert f"align-warehouse rebuild --data-dir {layout.root}" in message
    assert not db.exists()
    with pytest.raises(WarehouseCorruptError, match="awaits a rebuild"):  # no later step writes a partial one
        write_csv_problems(layout, db)
    assert not db.exists()

    assert warehouse_main(["rebuild", "--data-dir", str(layout.root), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "experiments" in out and "ab_results" in out
    after = _tables(db)
    assert after == before  # every table, row counts and checksums, the registry included
    assert warehouse_main(["check", "--data-dir", str(layout.root)]) == 0


def test_rebuild_keeps_a_registry_older_than_its_files(tmp_path: Path) -> None:
    """A warehouse registered before experiment files existed: the rebuild saves its rows first."""
    layout = DataLayout(tmp_path / "data").ensure()
    db = layout.warehouse_path
    register_experiment(db, "exp-old", {"baseline": 0.5, "placebo": 0.5}, name="Old")
    for path in (layout.root / "experiments").glob("*.experiment.json"):
        path.unlink()  # as if written by a platform without them
    before = _tables(db)
    assert warehouse_main(["rebuild", "--data-dir", str(layout.root), "--no-report"]) == 0
    assert _tables(db)["experiment_arms"] == before["experiment_arms"]
    assert _tables(db)["experiments"] == before["experiments"]
    assert len(list(layout.root.glob("warehouse.replaced-*.duckdb"))) == 1


def test_check_finds_a_damaged_block_and_moves_the_file_aside(tmp_path: Path, capsys) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    db = layout.warehouse_path
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE videos AS SELECT 'v' || range AS video_id, random() AS r FROM range(200000)")
    con.close()
    block = db.stat().st_size - 2 * 262144  # damage the middle of a data block; the size stays right
    with open(db, "r+b") as handle:
        handle.seek(block + 1000)
        handle.write(b"\xff" * 4096)
    assert warehouse_main(["check", "--data-dir", str(layout.root)]) == 1
    err = capsys.readouterr().err
    assert "align-warehouse rebuild" in err and "moved aside" in err
    assert not db.exists() and len(list(layout.root.glob("warehouse.corrupt-*.duckdb"))) == 1


HOLDER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print(con.execute("SELECT count(*) FROM videos").fetchall()[0][0], flush=True)
time.sleep(120)
"""


def _hold(db: Path, mode: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), mode], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == str(len(VIDEO_IDS))
    return holder


def _collected(tmp_path: Path) -> DataLayout:
    layout = DataLayout(tmp_path / "data").ensure()
    _artifacts(layout)
    COLLECTED_TABLES["videos"].collect(layout, layout.warehouse_path)
    return layout


def test_a_read_only_session_does_not_block_a_table_rebuild(tmp_path: Path) -> None:
    layout = _collected(tmp_path)
    db = layout.warehouse_path
    holder = _hold(db, "ro")
    try:
        extra = layout.artifact("video_catalog", "video_row", "v3")
        _write_parquet(extra, pd.DataFrame([{"video_id": "v3", "industry": "Home", "fps": 12.0, "frames": 6}]))
        started = time.monotonic()
        rows, _, _ = COLLECTED_TABLES["videos"].collect(layout, db)  # used to fail after ~34 s
        elapsed = time.monotonic() - started
        assert rows == 3 and elapsed < 10, elapsed
        assert holder.poll() is None  # the reader is untouched
    finally:
        holder.kill()
        holder.wait()
    with read_connection(db) as con:
        assert con.execute("SELECT count(*) FROM videos").fetchall()[0][0] == 3


def test_a_read_write_session_is_named_by_pid_at_once(tmp_path: Path) -> None:
    layout = _collected(tmp_path)
    db = layout.warehouse_path
    holder = _hold(db, "rw")
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as caught:
            COLLECTED_TABLES["videos"].collect(layout, db)
        assert time.monotonic() - started < 5
        assert f"close the connection held by PID {holder.pid}" in str(caught.value)
        assert caught.value.pids == [holder.pid]
    finally:
        holder.kill()
        holder.wait()
    assert db.exists() and COLLECTED_TABLES["videos"].collect(layout, db)[0] == 2


def test_experiment_file_follows_every_registry_write(tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    register_experiment(db, "exp-f", {"baseline": 0.25, "placebo": 0.75}, name="First")
    document = json.loads((tmp_path / "experiments" / "exp-f.experiment.json").read_text())
    arms = document["tables"]["experiment_arms"]
    assert sorted(arms["rows"]) == [["exp-f", "baseline", 0.25], ["exp-f", "placebo", 0.75]]
    assert document["tables"]["experiments"]["rows"] == [["exp-f", "First", None, None]]


def test_an_export_imported_from_elsewhere_is_archived_and_restored(tmp_path: Path, capsys) -> None:
    """``align-import-ab`` leaves the export where it is; its archived copy (with the mapping) lets a
    rebuild restore those rows, which the inbox archive alone would lose."""
    from align_core.cli.import_ab import main as import_main
    from align_core.experiments.config import register_experiment_config

    layout = DataLayout(tmp_path / "data").ensure()
    db = layout.warehouse_path
    register_experiment_config(db, ExperimentConfig("spring-ab", THREE))
    export = Path(__file__).parent / "fixtures" / "ab_exports" / "tiktok_split_test.csv"
    args = [str(export), "--mapping", "tiktok_split_test", "--data-dir", str(layout.root), "--no-catalog-check"]
    assert import_main(args) == 0
    assert "archived as" in capsys.readouterr().out
    kept = ("ab_results", "experiments", "experiment_arms", "experiment_variants", "experiment_configs")
    before = {t: v for t, v in _tables(db).items() if t in kept}
    assert before["ab_results"][0] > 0
    db.unlink()  # the warehouse is lost
    assert warehouse_main(["rebuild", "--data-dir", str(layout.root), "--no-report"]) == 0
    assert {t: v for t, v in _tables(db).items() if t in kept} == before


def test_a_lost_warehouse_is_not_silently_recreated_beside_its_registry(tmp_path: Path) -> None:
    """Deleted by hand: a new, empty warehouse would hold a partial registry; the platform says to rebuild."""
    layout = DataLayout(tmp_path / "data").ensure()
    db = layout.warehouse_path
    register_experiment(db, "exp-l", {"baseline": 0.5, "placebo": 0.5})
    db.unlink()
    with pytest.raises(WarehouseCorruptError, match="is missing, but .* holds the registry of 1 experiment"):
        register_experiment(db, "exp-l", {"baseline": 0.2, "placebo": 0.8})
    assert warehouse_main(["rebuild", "--data-dir", str(layout.root), "--no-report"]) == 0
    with read_connection(db) as con:
        assert con.execute("SELECT variant, planned_share FROM experiment_arms ORDER BY 1").fetchall() == [
            ("baseline", 0.5),
            ("placebo", 0.5),
        ]
