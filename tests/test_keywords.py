"""Keyword screening on the real keyword file's kinds of text."""

from pathlib import Path

import pytest

from align_core.inputs.keywords import screen_keyword
from align_core.inputs.research_csvs import read_keywords


@pytest.mark.parametrize(
    ("keyword", "category"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("shop now", "call_to_action"),
        ("Free Shipping", "non_visual"),
        ("swipe left", "call_to_action"),
        ("desliza a la izquierda", "call_to_action"),
        ("register now", "call_to_action"),
        ("50% off", "non_visual"),
        ("life insurance", "non_visual"),
        ("this app", "non_visual"),
        ("st\u25a0 crust", "garbled"),
        ("\u65e5\u672c\u9152", "non_latin"),
        ("water bottle", "ok"),
        ("four-leaf clover necklace", "ok"),
    ],
)
def test_screening(keyword: str, category: str) -> None:
    verdict = screen_keyword(keyword)
    assert verdict.category == category
    assert verdict.segmentable == (category == "ok")
    assert verdict.reason


def test_cyrillic_lookalikes_are_repaired() -> None:
    verdict = screen_keyword("\u0435\u0445\u0440\u0435rt h\u0430ir \u043c\u0430sk")
    assert verdict.keyword == "expert hair mask" and verdict.segmentable
    assert "Cyrillic" in verdict.notes[0]


def test_real_file_screening_rates(shared_data: Path) -> None:
    table = read_keywords(shared_data / "keywords.csv")
    verdicts = [screen_keyword(k) for k in table.keywords.values()]
    empty = sum(v.category == "empty" for v in verdicts)
    segmentable = sum(v.segmentable for v in verdicts)
    assert empty == 34_897
    # Most non-empty keywords name products; calls to action and abstractions are a minority.
    assert 0.8 < segmentable / (len(verdicts) - empty) < 0.95
    assert sum(v.category == "garbled" for v in verdicts) == 8
