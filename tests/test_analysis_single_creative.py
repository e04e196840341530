"""Single-creative A/B tests (one creative per arm, no video dimension): arm rates, the
two-proportion test and the k-arm chi-square with iid errors, instead of "fewer than 2 videos"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from align_core.experiments.ab_results import ingest_export
from analysis.report import build_report
from analysis.single_creative import IID_METHOD, is_single_creative, single_creative_lifts

# one creative per arm: each arm is its own "video" (the ad), as in a display-ad awareness test
ARMS = {
    "baseline": ("7222520718999059001", 50_000, 1_000, 40),
    "early_boost": ("7222520718999059002", 50_500, 1_150, 52),
}


def _export(path: Path) -> Path:
    rows = [
        {
            "experiment_id": "creative-test",
            "video_id": vid,
            "variant": arm,
            "date": "2026-11-01",
            "segment": "all",
            "impressions": n,
            "clicks": c,
            "conversions": k,
            "spend": round(n * 0.006, 4),
            "watch_time_s_sum": 8.0 * n,
            "watch_time_s_sumsq": 100.0 * n,
        }
        for arm, (vid, n, c, k) in ARMS.items()
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_single_creative_report_gives_iid_lifts(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    assert ingest_export(_export(tmp_path / "e.csv"), db, register=True).ok
    report = build_report(db, tmp_path / "out")
    assert not any("fewer than 2 videos" in n for n in report.notes)
    assert any("one creative per arm" in n for n in report.notes)
    lift = report.tables["analysis_lift"]
    ctr = lift[lift["metric"] == "ctr"].iloc[0]
    (_, n_b, c_b, _), (_, n_t, c_t, _) = ARMS["baseline"], ARMS["early_boost"]
    pooled = (c_b + c_t) / (n_b + n_t)
    z = (c_t / n_t - c_b / n_b) / np.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_b))
    assert ctr["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert ctr["rel_lift"] == pytest.approx((c_t / n_t) / (c_b / n_b) - 1, rel=1e-12)
    se = np.sqrt(1 / c_t - 1 / n_t + 1 / c_b - 1 / n_b)
    assert ctr["rel_ci_low"] == pytest.approx(np.exp(np.log((c_t / n_t) / (c_b / n_b)) - 1.959964 * se) - 1, rel=1e-5)
    assert ctr["se_method"] == IID_METHOD
    arms = report.tables["analysis_arms_test"]
    pearson = arms[(arms["metric"] == "ctr") & (arms["test"] == "pearson")].iloc[0]
    table = np.array([[c_b, n_b - c_b], [c_t, n_t - c_t]])
    assert pearson["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1], rel=1e-9)
    # SRM on the arms' totals (no video in two arms), not skipped
    srm = report.tables["analysis_guardrails"].set_index("check").loc["sample_ratio_mismatch"]
    assert srm["df"] == 1 and not srm["flagged"]
    assert "iid errors" in (tmp_path / "out" / "report.html").read_text()


def test_one_video_with_three_arms_is_single_creative() -> None:
    cells = pd.DataFrame(
        {
            "video_id": "v",
            "variant": ["baseline", "early_boost", "late_boost"],
            "impressions": [10_000, 10_000, 10_000],
            "clicks": [200, 260, 150],
            "conversions": [10, 12, 5],
        }
    )
    assert is_single_creative(cells)
    out = single_creative_lifts(cells)
    assert set(out["metric"]) == {"ctr", "cvr"} and (out["design"] == "single creative").all()
    assert out[out["metric"] == "ctr"].set_index("variant").loc["early_boost", "p_value"] < 0.01
