"""Platform exports through the shipped column maps: TikTok split test, Meta Ads Manager, generic long.

The fixtures in ``tests/fixtures/ab_exports`` are written in each platform's documented column
layout (TikTok's thousands separators and totals line, Meta's byte-order mark and blank cells
for zero counts, a long metric/value sheet) and carry the same numbers, so every mapping must
land the same rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from align_core.cli.import_ab import main as import_main
from align_core.experiments.ab_mapping import (
    AdNameError,
    decode_ad_name,
    encode_ad_name,
    load_mapping,
    shipped_mappings,
)
from align_core.experiments.ab_results import inbox_mapping, ingest_export, scan_inbox
from align_core.experiments.config import ExperimentConfig, register_experiment_config
from align_core.inputs.ids import is_valid_video_id
from align_core.stimuli.plans import DEFAULT_VARIANTS
from analysis import queries

FIXTURES = Path(__file__).parent / "fixtures" / "ab_exports"
HEX_ID = "53e516736286023422000014"  # a MongoDB ObjectId: digits 'e' digits, not a number
VIDEOS = pd.DataFrame(
    {"video_id": ["7228023352396972034", HEX_ID, "demo_b"], "industry": ["Beauty", "Beauty", "Fashion"]}
)
THREE_ARMS = tuple(s for s in DEFAULT_VARIANTS if s.name in ("baseline", "early_boost", "placebo"))


@pytest.fixture()
def warehouse(tmp_path: Path) -> Path:
    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    con.register("v", VIDEOS)
    con.execute("CREATE TABLE videos AS SELECT * FROM v")
    con.close()
    register_experiment_config(db, ExperimentConfig("spring-ab", THREE_ARMS))
    return db


def _stored(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT * EXCLUDE (source_file) FROM ab_results ORDER BY experiment_id, video_id, variant, date"
        ).df()
    finally:
        con.close()


def test_shipped_mappings_are_the_three_formats() -> None:
    assert {"tiktok_split_test", "meta_ads_manager", "generic_long"} <= set(shipped_mappings())
    for name in shipped_mappings():
        mapping = load_mapping(name)
        assert mapping.name == name


def test_ad_names_round_trip_and_say_why_they_fail() -> None:
    name = encode_ad_name("spring-ab", "7228023352396972034", "early_boost")
    assert name == "spring-ab.7228023352396972034.early_boost"
    assert decode_ad_name(name) == ("spring-ab", "7228023352396972034", "early_boost")
    with pytest.raises(AdNameError, match="three parts"):
        decode_ad_name("spring-ab.7228023352396972034.early_boost - Copy.2")
    with pytest.raises(AdNameError, match="scientific notation"):
        decode_ad_name("spring-ab.7.2E+18.baseline")
    with pytest.raises(AdNameError, match="scientific notation"):
        decode_ad_name("spring-ab.7E+18.baseline")


def test_hex_ids_pass_and_only_real_e_notation_is_flagged() -> None:
    assert is_valid_video_id(HEX_ID)
    assert is_valid_video_id("1e5")  # as text it is a fine id; only a signed exponent or a decimal point marks a float
    for mangled in ("7.2E+18", "7.22802E+18", "7E+18", "7.2e18"):
        assert not is_valid_video_id(mangled), mangled


@pytest.mark.parametrize("mapping", ["tiktok_split_test", "meta_ads_manager", "generic_long"])
def test_each_format_lands_the_same_rows(mapping: str, warehouse: Path, tmp_path: Path) -> None:
    source = shutil.copy(FIXTURES / f"{mapping}.csv", tmp_path / f"{mapping}.csv")
    report = ingest_export(source, warehouse, mapping=mapping, move=False)
    assert report.ok, report.errors
    assert report.rows == 18 and Path(source).exists()  # 3 videos x 3 arms x 2 days; the file stays put
    rows = _stored(warehouse)
    assert set(rows["video_id"]) == set(VIDEOS["video_id"])  # the hex id landed unchanged
    assert set(rows["variant"]) == {"baseline", "early_boost", "placebo"}
    assert (rows["segment"] == "all").all()
    assert rows["watch_time_s_sumsq"].isna().all()  # platforms report averages only
    # the reference: TikTok's sheet read by hand (thousands separators, totals line dropped)
    raw = pd.read_csv(FIXTURES / "tiktok_split_test.csv", dtype=str).iloc[:-1]
    num = lambda c: raw[c].str.replace(",", "").astype(float)  # noqa: E731
    assert rows["impressions"].sum() == num("Impressions").sum()
    assert rows["clicks"].sum() == num("Clicks (destination)").sum()
    assert rows["conversions"].sum() == num("Conversions").sum()
    assert rows["spend"].sum() == pytest.approx(num("Cost").sum())
    assert rows["video_plays"].sum() == num("Video views").sum()
    assert rows["views_p25"].sum() == num("Video views at 25%").sum()
    np.testing.assert_allclose(
        rows["watch_time_s_sum"].sum(), (num("Average play time per video view") * num("Video views")).sum()
    )
    if mapping == "meta_ads_manager":
        assert rows["views_6s"].isna().all()  # Meta has no 6-second count
    else:
        assert rows["views_6s"].sum() == num("6-second video views").sum()


def test_industry_comes_from_the_videos_table(warehouse: Path, tmp_path: Path) -> None:
    source = shutil.copy(FIXTURES / "tiktok_split_test.csv", tmp_path / "t.csv")
    assert ingest_export(source, warehouse, mapping="tiktok_split_test", move=False).ok
    con = duckdb.connect(str(warehouse), read_only=True)
    cells = queries.cell_totals(con)
    con.close()
    by_video = dict(zip(cells["video_id"], cells["industry"], strict=False))
    assert by_video == dict(zip(VIDEOS["video_id"], VIDEOS["industry"], strict=False))


def _edited(tmp_path: Path, mapping: str, edit) -> Path:
    text = (FIXTURES / f"{mapping}.csv").read_text(encoding="utf-8-sig")
    path = tmp_path / f"bad_{mapping}.csv"
    path.write_text(edit(text))
    return path


def test_one_bad_ad_name_is_reported_as_exactly_that(warehouse: Path, tmp_path: Path) -> None:
    bad = _edited(
        tmp_path,
        "tiktok_split_test",
        lambda t: t.replace(
            "spring-ab.demo_b.placebo,split-placebo,spring-ab,2026-11-03",
            "spring-ab.demo_b.placebo - Copy,split-placebo,spring-ab,2026-11-03",
        ),
    )
    report = ingest_export(bad, warehouse, mapping="tiktok_split_test", move=False)
    assert not report.ok
    assert len(report.errors) == 1, report.errors
    assert "row 18 (line 19)" in report.errors[0] and "'Ad name'" in report.errors[0]
    assert "does not decode" in report.errors[0]
    assert _stored(warehouse).empty  # nothing landed


def test_spreadsheet_mangled_id_flagged_hex_id_not(warehouse: Path, tmp_path: Path) -> None:
    bad = _edited(
        tmp_path,
        "meta_ads_manager",
        lambda t: t.replace("spring-ab.7228023352396972034.baseline", "spring-ab.7.2E+18.baseline", 1),
    )
    report = ingest_export(bad, warehouse, mapping="meta_ads_manager", move=False)
    assert len(report.errors) == 1 and "row 1 (line 2)" in report.errors[0]
    assert "'7.2E+18' is in scientific notation" in report.errors[0]
    assert not any(HEX_ID in e for e in report.errors)


def test_unregistered_arm_is_named_with_the_registry(warehouse: Path, tmp_path: Path) -> None:
    bad = _edited(tmp_path, "generic_long", lambda t: t.replace("demo_b.placebo", "demo_b.late_boost"))
    report = ingest_export(bad, warehouse, mapping="generic_long", move=False)
    assert not report.ok
    assert {e.split(": ", 2)[2] for e in report.errors} == {
        "unknown variant 'late_boost' for experiment 'spring-ab'; its registry has baseline, early_boost, placebo"
    }
    assert len(report.errors) == 2  # the two days of that ad, nothing else


def test_wrong_export_names_the_missing_columns(warehouse: Path, tmp_path: Path) -> None:
    source = shutil.copy(FIXTURES / "meta_ads_manager.csv", tmp_path / "meta.csv")
    report = ingest_export(source, warehouse, mapping="tiktok_split_test", move=False)
    assert len(report.errors) == 1
    assert "not a tiktok_split_test export" in report.errors[0] and "'Cost'" in report.errors[0]


def test_blank_required_count_is_a_row_error_unless_blank_means_zero(warehouse: Path, tmp_path: Path) -> None:
    bad = _edited(tmp_path, "tiktok_split_test", lambda t: t.replace(",2026-11-02,12.44,", ",2026-11-02,,", 1))
    report = ingest_export(bad, warehouse, mapping="tiktok_split_test", move=False)
    assert len(report.errors) == 1 and "'Cost' (spend): empty" in report.errors[0]


def test_cli_prints_a_per_row_list_and_lands_a_good_file(warehouse: Path, tmp_path: Path, capsys) -> None:
    bad = _edited(tmp_path, "tiktok_split_test", lambda t: t.replace('"2,040",36,', '"2,040",3600,', 1))
    code = import_main([str(bad), "--mapping", "tiktok_split_test", "--database", str(warehouse)])
    err = capsys.readouterr().err
    assert code == 1 and bad.exists()
    assert "NOT imported, 1 problem(s) in 1 row(s)" in err
    assert "row 1 (line 2):\n    - clicks (3600) > impressions (2040)" in err
    good = shutil.copy(FIXTURES / "tiktok_split_test.csv", tmp_path / "good.csv")
    assert import_main([str(good), "--mapping", "tiktok_split_test", "--database", str(warehouse)]) == 0
    assert "18 rows" in capsys.readouterr().out
    assert len(_stored(warehouse)) == 18


def test_inbox_subfolder_names_the_mapping(warehouse: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "ab_results"
    (inbox / "meta_ads_manager").mkdir(parents=True)
    (inbox / "unrelated").mkdir()
    placed = Path(shutil.copy(FIXTURES / "meta_ads_manager.csv", inbox / "meta_ads_manager" / "week1.csv"))
    shutil.copy(FIXTURES / "generic_long.csv", inbox / "unrelated" / "ignored.csv")
    assert scan_inbox(inbox) == [placed]
    assert inbox_mapping(placed, inbox) == "meta_ads_manager"
    report = ingest_export(placed, warehouse, mapping=inbox_mapping(placed, inbox))
    assert report.ok and report.moved_to == inbox / "meta_ads_manager" / "done" / "week1.csv"


def test_native_export_hex_ids_pass_e_notation_row_named_alone(tmp_path: Path) -> None:
    from align_demo.ab_simulator import simulate_ab_rows

    rows = simulate_ab_rows(
        VIDEOS, seed=2, days=1, segments=("all",), impressions_per_arm=300, experiment_id="spring-ab"
    )
    good = tmp_path / "inbox" / "good.csv"
    good.parent.mkdir(parents=True)
    rows.to_csv(good, index=False)
    db = tmp_path / "w.duckdb"
    assert ingest_export(good, db, known_videos=set(VIDEOS["video_id"]), register=True).ok
    bad_rows = rows.copy()
    bad_rows.loc[0, "video_id"] = "7.2E+18"
    bad = tmp_path / "inbox" / "bad.csv"
    bad_rows.to_csv(bad, index=False)
    report = ingest_export(bad, db, known_videos=set(VIDEOS["video_id"]))
    assert (
        len(report.errors) == 1 and "row 1 (line 2)" in report.errors[0] and "scientific notation" in report.errors[0]
    )
