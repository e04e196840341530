"""Ingest of the two research CSVs: real keywords file, and each bad-input case named clearly."""

from pathlib import Path

import pandas as pd
import pytest

from align_core.inputs.csv_rows import CsvValidationError
from align_core.inputs.research_csvs import ALIGNMENT_COLUMNS, read_alignment_scores, read_keywords

HEADER = ",".join(ALIGNMENT_COLUMNS)
GOOD_ROW = "7228023352396972034,1,0.25,0.0,2.5,0.012,0.03,12,1,0.6,0.4,120.5,Beauty"


def write(tmp_path: Path, text: str, name: str = "alignment_score.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_real_keywords_file_keeps_every_id(shared_data: Path) -> None:
    table = read_keywords(shared_data / "keywords.csv").raise_for_problems()
    raw = pd.read_csv(shared_data / "keywords.csv", dtype=str, keep_default_na=False)
    assert len(table.keywords) == 107_205 == len(raw)
    assert set(table.keywords) == set(raw["_id"])  # no id corrupted or dropped
    assert all(len(video_id) == 19 and video_id.isdigit() for video_id in table.keywords)
    empty = sum(1 for keyword in table.keywords.values() if keyword == "")
    assert empty == 34_897
    assert any("," in keyword for keyword in table.keywords.values())  # quoted commas survive
    assert any(any(ord(c) > 0x2FFF for c in keyword) for keyword in table.keywords.values())  # CJK etc.


def test_ids_survive_as_strings(tmp_path: Path) -> None:
    scores = read_alignment_scores(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n")).raise_for_problems()
    assert scores.table["video_id"].tolist() == ["7228023352396972034"]
    assert scores.table.loc[0, "industry"] == "Beauty"


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("7228023352396972034,1,,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "attention_proportion"),
        ("7228023352396972034,1,nan,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "not a finite number"),
        ("7228023352396972034,1,1.4,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "outside [0.0, 1.0]"),
        ("7228023352396972034,1,0.2,3.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "before start_time"),
        ("7228023352396972034,1,0.2,2.5,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "zero-length scene"),
        ("7.22802335239697E+18,1,0.2,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "scientific notation"),
        ("../../etc,1,0.2,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "not allowed"),
        ("7228023352396972034,x,0.2,0.0,2.5,0.01,0.03,1,1,0.5,0.4,120,Beauty", "positive integer"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, row: str, needle: str) -> None:
    path = write(tmp_path, f"{HEADER}\n{GOOD_ROW.replace('7228023352396972034', '7228023352396972035')}\n{row}\n")
    scores = read_alignment_scores(path)
    assert len(scores.problems) == 1
    problem = scores.problems[0]
    assert problem.line == 3 and needle in str(problem)
    with pytest.raises(CsvValidationError, match="line 3"):
        scores.raise_for_problems()
    # The other video's rows are still usable: one bad row does not block other partitions.
    assert len(scores.scenes_for("7228023352396972035")) == 1


def test_bad_row_fails_only_its_video(tmp_path: Path) -> None:
    bad = GOOD_ROW.replace(",1,0.25,", ",2,1.5,")
    scores = read_alignment_scores(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{bad}\n"))
    with pytest.raises(CsvValidationError, match=r"(?s)alignment_score.csv: 1 problem.*line 3.*attention_proportion"):
        scores.scenes_for("7228023352396972034")


def test_duplicate_scene(tmp_path: Path) -> None:
    scores = read_alignment_scores(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW}\n"))
    assert "duplicate scene 1" in str(scores.problems[0]) and "first on line 2" in str(scores.problems[0])


def test_missing_columns(tmp_path: Path) -> None:
    header = HEADER.replace(",attention_proportion", "")
    with pytest.raises(CsvValidationError, match=r"missing column\(s\) \['attention_proportion'\]"):
        read_alignment_scores(write(tmp_path, f"{header}\n"))
    with pytest.raises(CsvValidationError, match="missing column"):
        read_keywords(write(tmp_path, "id,keyword\n1,shoes\n", "keywords.csv"))


def test_non_utf8_names_the_line_and_blocks_only_its_video(tmp_path: Path) -> None:
    path = tmp_path / "keywords.csv"
    path.write_bytes("_id,keyword_list[0]\n7228023352396972034,shoes\n7228023352396972035,cr\xe8me\n".encode("latin-1"))
    table = read_keywords(path)
    assert table.keyword_for("7228023352396972034") == "shoes"
    with pytest.raises(CsvValidationError, match=r"line 3, column 'keyword_list\[0\]'.*: not UTF-8"):
        table.keyword_for("7228023352396972035")


def test_keyword_id_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path, "_id,keyword_list[0]\n7228023352396972034,shoes\n7228023352396972034,bag\n7.2E+18,x\n", "keywords.csv"
    )
    table = read_keywords(path)
    messages = [str(p) for p in table.problems]
    assert any("duplicate id" in m and "line 3" in m for m in messages)
    assert any("scientific notation" in m and "line 4" in m for m in messages)
    with pytest.raises(CsvValidationError):
        table.keyword_for("7228023352396972034")
