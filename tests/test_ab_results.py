"""A/B export ingestion: per-row validation, whole-file rejection, idempotent upsert."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from align_core.experiments.ab_results import REQUIRED_COLUMNS, ingest_export, register_experiment, scan_inbox
from align_demo.ab_simulator import SimulationEffects, planted_truth, simulate_ab_export, simulate_ab_rows

LONG_ID = "7228023352396972034"  # a real 19-digit TikTok id from keywords.csv (> 2**53)
VIDEOS = pd.DataFrame(
    {"video_id": [LONG_ID, "7225328146064211970", "demo_b"], "industry": ["jewelry", "jewelry", "fitness"]}
)
KNOWN = set(VIDEOS["video_id"])


def _snapshot(db: Path) -> dict[str, pd.DataFrame]:
    if not db.exists():
        return {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in ("ab_results", "experiments", "experiment_arms"):
            if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[
                0
            ]:
                out[table] = con.execute(f"SELECT * FROM {table} ORDER BY ALL").df()
        return out
    finally:
        con.close()


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


def _good_rows(seed: int = 0) -> pd.DataFrame:
    return simulate_ab_rows(
        VIDEOS,
        seed=seed,
        days=2,
        segments=["age=18-24|placement=feed", "age=25-34|placement=feed"],
        impressions_per_arm=2000,
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox" / "ab_results"
    folder.mkdir(parents=True)
    return folder


def test_good_export_lands_and_reingest_changes_nothing(inbox: Path, tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    rows = _good_rows()
    source = _write_csv(rows, inbox / "export_1.csv")
    keep = tmp_path / "copy.csv"
    shutil.copy(source, keep)
    assert scan_inbox(inbox) == [source]

    report = ingest_export(source, db, known_videos=KNOWN, register=True)
    assert report.ok, report.errors
    assert report.rows == len(rows) and report.rows_replaced == 0
    assert report.moved_to == inbox / "done" / "export_1.csv" and report.moved_to.exists()
    assert not source.exists() and scan_inbox(inbox) == []
    first = _snapshot(db)
    stored = first["ab_results"]
    assert len(stored) == len(rows)
    assert LONG_ID in set(stored["video_id"])  # 19 digits survived exactly (no float round trip)
    assert int(stored["impressions"].sum()) == int(rows["impressions"].sum())
    arms = first["experiment_arms"]
    assert len(arms) == 7 and abs(arms["planned_share"].sum() - 1) < 1e-9
    assert str(first["experiments"]["start_date"].iat[0])[:10] == "2026-11-01"

    shutil.copy(keep, source)
    again = ingest_export(source, db, known_videos=KNOWN, register=True)
    assert again.ok and again.rows_replaced == len(rows)
    _assert_same(first, _snapshot(db))
    assert again.moved_to.parent == inbox / "done" and again.moved_to.exists()


def test_restated_rows_replace_by_natural_key(inbox: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    rows = _good_rows()
    assert ingest_export(_write_csv(rows, inbox / "a.csv"), db, known_videos=KNOWN, register=True).ok
    restated = rows.iloc[:3].copy()
    restated["impressions"] += 10
    report = ingest_export(_write_csv(restated, inbox / "b.csv"), db, known_videos=KNOWN, register=True)
    assert report.ok, report.errors
    assert report.rows_replaced == 3
    stored = _snapshot(db)["ab_results"]
    assert len(stored) == len(rows)
    assert int(stored["impressions"].sum()) == int(rows["impressions"].sum()) + 30


def _corrupt(case: str, rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    bad = rows.astype(str).copy()
    if case == "negative":
        bad.loc[4, "impressions"] = "-5"
        return bad, "row 5 (line 6): impressions '-5' is negative"
    if case == "clicks_gt_impressions":
        bad.loc[2, "clicks"] = str(int(rows.loc[2, "impressions"]) + 1)
        return bad, "row 3 (line 4): clicks"
    if case == "conversions_gt_clicks":
        bad.loc[7, "conversions"] = str(int(rows.loc[7, "clicks"]) + 3)
        return bad, "row 8 (line 9): conversions"
    if case == "unknown_variant":
        bad.loc[1, "variant"] = "mid_boost"
        return bad, "row 2 (line 3): unknown variant 'mid_boost'"
    if case == "unknown_video":
        bad.loc[0, "video_id"] = "9999"
        return bad, "row 1 (line 2): unknown video '9999'"
    if case == "missing_column":
        return bad.drop(columns=["conversions"]), "missing required column(s) conversions"
    if case == "bad_date":
        bad.loc[6, "date"] = "11/03/2026"
        return bad, "row 7 (line 8): bad date '11/03/2026'"
    if case == "scientific_id":
        bad.loc[3, "video_id"] = "7.22802335239697e+18"
        return bad, "row 4 (line 5): video_id: video id '7.22802335239697e+18' is in scientific notation"
    if case == "float_id":
        bad.loc[3, "video_id"] = "7228023352396972032.0"
        return bad, "row 4 (line 5): video_id '7228023352396972032.0' looks like a number"
    if case == "not_a_number":
        bad.loc[9, "clicks"] = "twelve"
        return bad, "row 10 (line 11): clicks 'twelve' is not a number"
    if case == "duplicate_key":
        return pd.concat([bad, bad.iloc[[0]]], ignore_index=True), "duplicate natural key"
    raise AssertionError(case)


BAD_CASES = [
    "negative",
    "clicks_gt_impressions",
    "conversions_gt_clicks",
    "unknown_variant",
    "unknown_video",
    "missing_column",
    "bad_date",
    "scientific_id",
    "float_id",
    "not_a_number",
    "duplicate_key",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_export_rejected_whole_and_tables_unchanged(case: str, inbox: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    assert ingest_export(_write_csv(_good_rows(0), inbox / "first.csv"), db, known_videos=KNOWN, register=True).ok
    before = _snapshot(db)

    bad, expected = _corrupt(case, _good_rows(1))
    source = _write_csv(bad, inbox / f"bad_{case}.csv")
    report = ingest_export(source, db, known_videos=KNOWN, register=True)
    assert not report.ok
    assert any(expected in e for e in report.errors), report.errors
    assert all(e.startswith(f"bad_{case}.csv") for e in report.errors)
    assert report.moved_to == inbox / "rejected" / f"bad_{case}.csv" and report.moved_to.exists()
    assert report.errors_file is not None and expected in report.errors_file.read_text()
    _assert_same(before, _snapshot(db))

    # a good file after a bad one lands
    later = ingest_export(
        _write_csv(_good_rows(2).assign(experiment_id="exp-2"), inbox / "later.csv"),
        db,
        known_videos=KNOWN,
        register=True,
    )
    assert later.ok
    after = _snapshot(db)
    assert len(after["ab_results"]) == 2 * len(before["ab_results"])


def test_parquet_export_and_float_ids_in_parquet(inbox: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    rows = _good_rows()
    good = inbox / "good.parquet"
    rows.to_parquet(good, index=False)
    assert ingest_export(good, db, known_videos=KNOWN, register=True).ok
    before = _snapshot(db)

    floats = rows.copy()
    floats["video_id"] = floats["video_id"].map(lambda v: float(v) if v.isdigit() else float("nan"))
    bad = inbox / "floats.parquet"
    pq.write_table(pa.Table.from_pandas(floats, preserve_index=False), bad)
    report = ingest_export(bad, db, known_videos=KNOWN, register=True)
    assert not report.ok
    assert any("video_id is stored as double" in e for e in report.errors), report.errors[:3]
    _assert_same(before, _snapshot(db))


def test_catalog_from_warehouse_videos_table(inbox: Path, tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE videos (video_id VARCHAR, industry VARCHAR)")
    con.execute("INSERT INTO videos VALUES (?, 'jewelry')", [LONG_ID])
    con.close()
    report = ingest_export(_write_csv(_good_rows(), inbox / "e.csv"), db, register=True)  # two ids not in the catalog
    assert not report.ok
    assert any("unknown video 'demo_b'" in e for e in report.errors)


def test_unreadable_file_rejected(inbox: Path, tmp_path: Path) -> None:
    bad = inbox / "garbage.parquet"
    bad.write_bytes(b"not parquet at all")
    report = ingest_export(bad, tmp_path / "w.duckdb", known_videos=KNOWN, register=True)
    assert not report.ok and "cannot be read" in report.errors[0]
    assert (inbox / "rejected" / "garbage.parquet").exists()
    assert not (tmp_path / "w.duckdb").exists()


def test_scan_inbox_skips_hidden_and_subfolders(inbox: Path) -> None:
    (inbox / ".tmp-part.csv").write_text("x")
    (inbox / "notes.txt").write_text("x")
    (inbox / "done").mkdir()
    (inbox / "done" / "old.csv").write_text("x")
    (inbox / "b.parquet").write_text("x")
    (inbox / "a.csv").write_text("x")
    assert [p.name for p in scan_inbox(inbox)] == ["a.csv", "b.parquet"]
    assert scan_inbox(inbox / "missing") == []


def test_simulator_writes_the_export_format(inbox: Path) -> None:
    path = simulate_ab_export(VIDEOS, inbox / "sim.csv", seed=4, days=3)
    frame = pd.read_csv(path, dtype=str)
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert LONG_ID in set(frame["video_id"])
    assert len(frame) == len(VIDEOS) * 7 * 3 * 4
    assert scan_inbox(inbox) == [path]  # no leftover temporary files
    truth = planted_truth(VIDEOS, SimulationEffects(industry_modifier={"jewelry": 2.0}))
    # two of three videos are jewelry (modifier 2), one fitness (1): pooled = lift * 5/3
    assert truth["ctr"]["early_boost"] == pytest.approx(0.12 * 5 / 3)
    assert truth["ctr_by_industry"]["fitness"]["early_boost"] == pytest.approx(0.12)
    # CVR is per click: (1 + l m)(1 + c m) averaged, over (1 + l m) averaged
    a, b = np.array([1.24, 1.24, 1.12]), np.array([1.10, 1.10, 1.05])
    assert truth["cvr"]["early_boost"] == pytest.approx((a * b).mean() / a.mean() - 1)
    assert set(truth) >= {"ctr", "cvr", "watch_time"}
    dose = pd.DataFrame({"video_id": [LONG_ID], "variant": ["placebo"], "achieved_delta": [0.3]})
    with_dose = planted_truth(VIDEOS, SimulationEffects(ctr_dose_slope=0.5), dose)
    assert with_dose["ctr"]["placebo"] == pytest.approx((np.exp(0.15) + 2) / 3 - 1)


def test_register_experiment_validates_shares(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with pytest.raises(ValueError, match="sum to 1"):
        register_experiment(db, "exp-1", {"baseline": 0.5, "early_boost": 0.4})
    register_experiment(db, "exp-1", {"baseline": 0.5, "early_boost": 0.5}, name="two arms")
    snap = _snapshot(db)
    assert list(snap["experiment_arms"]["planned_share"]) == [0.5, 0.5]
    assert snap["experiments"]["name"].iat[0] == "two arms"
