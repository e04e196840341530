"""Real exports without a preparation script, and nothing accepted silently.

The fixtures ``generic_ad_level*.csv`` are written in a generic ad-level layout (an ad id, its
experiment and arm, impressions, clicks, conversions, spend, a date): one creative per arm
(``kind: creative``), a view-through row with more conversions than clicks, the same numbers
as a semicolon / decimal-comma sheet, and ad names in a lab's own scheme beside a blank
watch-time column. The second half feeds the silent-acceptance cases of issue 22 (a US date in
an ISO file, E-notation and 64-bit-overflowing counts, a typo in the experiment id, UTF-16 and
Latin-1 files) through the shipped mappings and the native schema.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from align_core.cli.import_ab import main as import_main
from align_core.experiments.ab_mapping import AdNameError, AdNameTemplate, load_mapping
from align_core.experiments.ab_results import ingest_export, register_experiment
from align_core.experiments.config import ExperimentConfig, register_experiment_config, registered_variants
from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, parse_variants
from align_demo.ab_simulator import simulate_ab_rows

FIXTURES = Path(__file__).parent / "fixtures" / "ab_exports"
CREATIVE_TEST = ExperimentConfig(
    "spring-ads",
    parse_variants([{"name": "creative_a", "kind": "identity"}, {"name": "creative_b", "kind": "creative"}]),
)
THREE_ARMS = tuple(s for s in DEFAULT_VARIANTS if s.name in ("baseline", "early_boost", "placebo"))


@pytest.fixture()
def creative_db(tmp_path: Path) -> Path:
    db = tmp_path / "warehouse.duckdb"
    register_experiment_config(db, CREATIVE_TEST)
    return db


@pytest.fixture()
def spring_ab(tmp_path: Path) -> Path:
    db = tmp_path / "spring.duckdb"
    register_experiment_config(db, ExperimentConfig("spring-ab", THREE_ARMS))
    return db


def _stored(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (source_file) FROM ab_results ORDER BY video_id, date").df()


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(FIXTURES / name, tmp_path / name))


def _mapping_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab_mapping.yaml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# mappings that need no script
# ---------------------------------------------------------------------------------------------


def test_creative_arms_validate_register_and_round_trip(tmp_path: Path) -> None:
    spec = VariantSpec.from_dict({"name": "creative_b", "kind": "creative"})
    assert (spec.window, spec.factor, spec.role, spec.changes_control) == ("none", 1.0, "treatment", False)
    with pytest.raises(ValueError, match="creative means no edit"):
        VariantSpec.from_dict({"name": "creative_c", "kind": "creative", "window": "early", "factor": 1.5})
    db = tmp_path / "w.duckdb"
    register_experiment_config(db, CREATIVE_TEST)
    with duckdb.connect(str(db), read_only=True) as con:
        assert registered_variants(con)["spring-ads"] == CREATIVE_TEST.variants


def test_generic_ad_level_export_of_a_creative_test_lands(creative_db: Path, tmp_path: Path) -> None:
    report = ingest_export(_copy("generic_ad_level.csv", tmp_path), creative_db, mapping="generic_ad_level")
    assert report.ok, report.errors
    rows = _stored(creative_db)
    source = pd.read_csv(FIXTURES / "generic_ad_level.csv", dtype={"ad_id": str})
    assert len(rows) == len(source) == 8
    assert set(rows["variant"]) == {"creative_a", "creative_b"} and set(rows["video_id"]) == set(source["ad_id"])
    assert rows["impressions"].sum() == source["impressions"].sum()
    assert rows["conversions"].sum() == source["conversions"].sum()
    assert rows["spend"].sum() == pytest.approx(source["spend"].sum())
    # view-through: the row with 24 conversions on 21 clicks landed as it is
    assert ((rows["conversions"] > rows["clicks"]) & (rows["conversions"] == 24)).sum() == 1
    assert rows["watch_time_s_sum"].isna().all()  # not reported: NULL, never a made-up 0


def test_conversions_above_clicks_need_the_option(creative_db: Path, tmp_path: Path) -> None:
    text = (FIXTURES.parent.parent.parent / "align_core/experiments/ab_mappings/generic_ad_level.yaml").read_text()
    strict = _mapping_file(tmp_path, text.replace("conversions_may_exceed_clicks: true", ""))
    report = ingest_export(_copy("generic_ad_level.csv", tmp_path), creative_db, mapping=str(strict), move=False)
    assert [e.split(": ", 2)[1:] for e in report.errors] == [
        [
            "row 4 (line 5)",
            "conversions (24) > clicks (21); if they include view-through conversions, "
            "set conversions_may_exceed_clicks: true in the mapping",
        ]
    ]


def test_semicolon_decimal_comma_export_lands_the_same_rows(creative_db: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference" / "warehouse.duckdb"  # its own data directory (registry files)
    reference.parent.mkdir()
    register_experiment_config(reference, CREATIVE_TEST)
    assert ingest_export(_copy("generic_ad_level.csv", tmp_path), reference, mapping="generic_ad_level").ok
    source = _copy("generic_ad_level_semicolon.csv", tmp_path)
    report = ingest_export(source, creative_db, mapping="generic_ad_level")
    assert report.ok, report.errors
    pd.testing.assert_frame_equal(_stored(creative_db), _stored(reference))


def test_a_wrong_delimiter_gets_a_hint_not_just_missing_columns(creative_db: Path, tmp_path: Path) -> None:
    text = (FIXTURES.parent.parent.parent / "align_core/experiments/ab_mappings/generic_ad_level.yaml").read_text()
    commas = _mapping_file(tmp_path, text.replace("delimiter: auto", "delimiter: ','"))
    source = _copy("generic_ad_level_semicolon.csv", tmp_path)
    report = ingest_export(source, creative_db, mapping=str(commas), move=False)
    assert len(report.errors) == 1 and "missing column(s)" in report.errors[0]
    assert "the file looks ';'-separated, not ','; set delimiter: ';' in the mapping" in report.errors[0]
    dots = _mapping_file(tmp_path, text.replace("decimal: auto", "decimal: '.'"))
    report = ingest_export(source, creative_db, mapping=str(dots), move=False)
    assert report.errors[0].endswith(
        "row 1 (line 2): column 'impressions' (impressions): '2.040' must be a whole count; it looks like '.' "
        "digit grouping (a decimal-comma locale): set decimal: ',' in the mapping"
    )
    cents = _copy("generic_ad_level_semicolon.csv", tmp_path)
    cents.write_text(cents.read_text().replace("2.040;", "2040;", 1))
    report = ingest_export(cents, creative_db, mapping=str(dots), move=False)
    assert any(
        e.endswith(
            "row 1 (line 2): column 'spend' (spend): '12,44' is not a number; it looks like a decimal comma: "
            "set decimal: ',' in the mapping (or auto)"
        )
        for e in report.errors
    )


NAMED_MAPPING = """
name: lab_named
columns:
  ad_name: {column: ad_name, template: "{experiment}__{video}__{variant}"}
  date: date
  impressions: impressions
  clicks: clicks
  conversions: conversions
  spend: spend
  video_plays: video_plays
%s
conversions_may_exceed_clicks: true
"""


def test_template_ad_names_and_not_reported_watch_time(creative_db: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference" / "warehouse.duckdb"  # its own data directory (registry files)
    reference.parent.mkdir()
    register_experiment_config(reference, CREATIVE_TEST)
    assert ingest_export(_copy("generic_ad_level.csv", tmp_path), reference, mapping="generic_ad_level").ok
    # the watch-time column is blank while plays were counted: mapped, it is refused ...
    mapped = _mapping_file(tmp_path, NAMED_MAPPING % "  avg_watch_time_s: avg_watch_time_s")
    source = _copy("generic_ad_level_named.csv", tmp_path)
    report = ingest_export(source, creative_db, mapping=str(mapped), move=False)
    assert len(report.errors) == 8 and "is empty while 1836 plays were counted" in report.errors[0]
    # ... declared not reported, it is NULL and the rest lands exactly as the column layout does
    declared = _mapping_file(tmp_path, NAMED_MAPPING % "not_reported: [avg_watch_time_s]")
    report = ingest_export(source, creative_db, mapping=str(declared), move=False)
    assert report.ok, report.errors
    stored = _stored(creative_db)
    assert stored["watch_time_s_sum"].isna().all() and stored["video_plays"].notna().all()
    pd.testing.assert_frame_equal(stored.drop(columns="video_plays"), _stored(reference).drop(columns="video_plays"))


def test_not_reported_conversions_are_null_not_zero(creative_db: Path, tmp_path: Path) -> None:
    text = NAMED_MAPPING.replace("  conversions: conversions\n", "") % "not_reported: [avg_watch_time_s, conversions]"
    report = ingest_export(
        _copy("generic_ad_level_named.csv", tmp_path), creative_db, mapping=str(_mapping_file(tmp_path, text))
    )
    assert report.ok, report.errors
    assert _stored(creative_db)["conversions"].isna().all()


def test_template_decodes_exactly_or_says_why() -> None:
    template = AdNameTemplate("{experiment}__{video}__{variant}")
    assert template.decode("spring-ads__120210001__creative_b") == {
        "experiment_id": "spring-ads",
        "video_id": "120210001",
        "variant": "creative_b",
    }
    with pytest.raises(AdNameError, match="splits more than one way"):
        template.decode("spring__ads__120210001__creative_b")
    with pytest.raises(AdNameError, match="does not match the mapping's template"):
        template.decode("spring-ads.120210001.creative_b")
    with pytest.raises(AdNameError, match="scientific notation"):
        template.decode("spring-ads__1.2E+8__creative_b")
    with pytest.raises(ValueError, match="ad name template"):
        AdNameTemplate("{experiment}.{clip}.{variant}")
    with pytest.raises(ValueError, match="video_id must come from exactly one place"):
        load_mapping(
            _write(
                "name: x\ncolumns: {ad_name: {column: n, template: '{experiment}.{variant}'}, date: d, "
                "impressions: i, clicks: c, conversions: v, spend: s}\nnot_reported: [avg_watch_time_s]\n"
            )
        )


def _write(text: str) -> Path:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    handle.write(text)
    handle.close()
    return Path(handle.name)


# ---------------------------------------------------------------------------------------------
# no silent acceptance
# ---------------------------------------------------------------------------------------------


def _edited(name: str, tmp_path: Path, old: str, new: str) -> Path:
    text = (FIXTURES / name).read_text(encoding="utf-8-sig")
    assert old in text
    path = tmp_path / f"edited_{name}"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_us_date_inside_an_iso_file_is_refused_with_its_row(spring_ab: Path, tmp_path: Path) -> None:
    # the TikTok mapping accepts %m/%d/%Y files, but not one such date among ISO ones
    bad = _edited("tiktok_split_test.csv", tmp_path, "spring-ab,2026-11-03", "spring-ab,03/11/2026")
    report = ingest_export(bad, spring_ab, mapping="tiktok_split_test", move=False)
    assert len(report.errors) == 1, report.errors
    assert "row 10 (line 11): column 'Date': date '03/11/2026' is written month-day-year order" in report.errors[0]
    assert "the file's other dates are year-month-day order (17 rows)" in report.errors[0]
    assert _stored(spring_ab).empty


def test_a_file_written_all_in_us_dates_still_imports(spring_ab: Path, tmp_path: Path) -> None:
    text = (FIXTURES / "tiktok_split_test.csv").read_text()
    path = tmp_path / "us.csv"
    path.write_text(text.replace("2026-11-02", "11/02/2026").replace("2026-11-03", "11/03/2026"))
    assert ingest_export(path, spring_ab, mapping="tiktok_split_test", move=False).ok


@pytest.mark.parametrize("mapped", [True, False])
def test_e_notation_counts_are_refused_like_e_notation_ids(mapped: bool, spring_ab: Path, tmp_path: Path) -> None:
    if mapped:
        bad = _edited("tiktok_split_test.csv", tmp_path, '"2,040",36', "7.2E+18,36")
        report = ingest_export(bad, spring_ab, mapping="tiktok_split_test", move=False)
    else:
        rows = simulate_ab_rows(_videos(), seed=1, days=1, segments=("all",), experiment_id="spring-ab")
        rows = rows.astype(str)
        rows.loc[0, "impressions"] = "7.2E+18"
        bad = tmp_path / "native.csv"
        rows.to_csv(bad, index=False)
        report = ingest_export(bad, spring_ab, check_catalog=False, known_variants=_all_arms(), move=False)
    assert len(report.errors) == 1, report.errors
    assert "row 1 (line 2)" in report.errors[0] and "'7.2E+18' is in scientific notation" in report.errors[0]


def _videos() -> pd.DataFrame:
    return pd.DataFrame({"video_id": ["7228023352396972034", "demo_b"], "industry": ["Beauty", "Home"]})


def _all_arms() -> list[str]:
    return [s.name for s in DEFAULT_VARIANTS]


def test_counts_are_exact_integers_and_too_large_ones_say_so(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    register_experiment(db, "spring-ab", {s.name: 1 / 7 for s in DEFAULT_VARIANTS})
    rows = simulate_ab_rows(_videos(), seed=1, days=1, segments=("all",), experiment_id="spring-ab").astype(str)
    exact = {0: 2**63 - 1, 1: 2**53 + 1}  # the largest int64, and the first integer a float rounds
    for idx, value in exact.items():
        rows.loc[idx, "impressions"] = str(value)
    good = tmp_path / "good.csv"
    rows.to_csv(good, index=False)
    assert ingest_export(good, db, check_catalog=False, move=False).ok
    stored = _stored(db).set_index(["video_id", "variant"])
    for idx, value in exact.items():
        assert int(stored.loc[(rows.loc[idx, "video_id"], rows.loc[idx, "variant"]), "impressions"]) == value
    rows.loc[2, "impressions"] = str(2**63)
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    report = ingest_export(bad, db, check_catalog=False, move=False)
    assert list(report.errors) == [
        f"bad.csv: row 3 (line 4): impressions '{2**63}' is too large: counts must be below 2^63 ({2**63 - 1})"
    ]


def test_an_unregistered_experiment_is_refused_unless_registered(spring_ab: Path, tmp_path: Path, capsys) -> None:
    typo = tmp_path / "typo.csv"
    typo.write_text((FIXTURES / "tiktok_split_test.csv").read_text().replace("spring-ab.", "sprng-ab."))
    report = ingest_export(typo, spring_ab, mapping="tiktok_split_test", move=False)
    assert list(report.errors) == [
        "typo.csv: experiment 'sprng-ab' (row(s) 1-18) is not registered (registered: spring-ab); did you mean "
        "'spring-ab'? register it first (align-ab-plan experiment.yaml) or import with --register to start a "
        "new experiment"
    ]
    assert _stored(spring_ab).empty
    args = [str(typo), "--mapping", "tiktok_split_test", "--database", str(spring_ab), "--no-catalog-check"]
    assert import_main(args) == 1 and "is not registered" in capsys.readouterr().err
    assert import_main([*args, "--register"]) == 0
    assert set(_stored(spring_ab)["experiment_id"]) == {"sprng-ab"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le-no-bom", "cp1252"])
def test_utf16_and_latin1_exports_are_decoded(encoding: str, spring_ab: Path, tmp_path: Path) -> None:
    text = (FIXTURES / "tiktok_split_test.csv").read_text().replace("split-baseline", "split-café-baseline")
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(text.encode("utf-16-le" if encoding == "utf-16-le-no-bom" else encoding))
    report = ingest_export(path, spring_ab, mapping="tiktok_split_test", move=False)
    assert report.ok, report.errors
    assert report.rows == 18


def test_native_utf16_export_is_decoded_and_garbage_is_refused_with_save_as_utf8(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    rows = simulate_ab_rows(_videos(), seed=1, days=1, segments=("all",), experiment_id="spring-ab")
    path = tmp_path / "excel.csv"
    path.write_bytes(rows.to_csv(index=False).encode("utf-16"))
    assert ingest_export(path, db, check_catalog=False, move=False, register=True).ok
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(rows.to_csv(index=False).encode() + b"\x81\x8d\xff\n")
    report = ingest_export(garbage, db, check_catalog=False, move=False)
    assert len(report.errors) == 1 and "save the export as CSV UTF-8" in report.errors[0]
    assert "UnicodeDecodeError" not in report.errors[0]


def test_an_unregistered_experiment_is_reported_once_not_per_arm(creative_db: Path, tmp_path: Path) -> None:
    typo = _edited("generic_ad_level.csv", tmp_path, "spring-ads", "spring-adz")
    typo.write_text(typo.read_text().replace("spring-ads", "spring-adz"))
    report = ingest_export(typo, creative_db, mapping="generic_ad_level", move=False)
    assert len(report.errors) == 1 and "experiment 'spring-adz' (row(s) 1-8) is not registered" in report.errors[0]
