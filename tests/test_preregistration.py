"""Pre-registered analysis plans (hashed, stored, cited with deviations) and the upload manifest."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from align_core.experiments.ab_mapping import decode_ad_name
from align_core.experiments.ab_results import ingest_export
from align_core.experiments.config import ExperimentConfig
from align_core.experiments.upload_manifest import build_upload_manifest
from align_core.io.hashing import file_sha256
from align_core.io.video_io import write_video
from align_core.stimuli.plans import DEFAULT_VARIANTS
from align_demo.ab_simulator import simulate_ab_export
from analysis.guardrails import design_effect, mde_relative
from analysis.preregistration import analysis_plan, plan_deviations, plan_hash, register_plan, verify_plan_file
from analysis.report import build_report

THREE = tuple(s for s in DEFAULT_VARIANTS if s.name in ("baseline", "early_boost", "placebo"))
CONFIG = ExperimentConfig(
    "exp-plan",
    DEFAULT_VARIANTS,
    planned_videos=4,
    planned_impressions_per_arm=40_000,
    planned_days=5,
    expected_base_ctr=0.02,
    expected_icc=0.001,
)
VIDEOS = pd.DataFrame(
    {
        "video_id": ["7228023352396972034", "53e516736286023422000014", "v3", "v4"],
        "industry": ["Beauty", "Beauty", "Home", "Home"],
    }
)


def test_plan_states_hypotheses_corrections_mde_and_stopping_rule() -> None:
    plan = analysis_plan(CONFIG)
    assert plan_hash(plan) == plan_hash(analysis_plan(CONFIG))  # deterministic
    assert len(plan["hypotheses"]["confirmatory"]) == 6
    timing = [h["contrast"] for h in plan["hypotheses"]["timing"]]
    assert timing == [
        "early_boost vs middle_boost",
        "early_boost vs late_boost",
        "middle_boost vs late_boost",
        "joint: early_boost = middle_boost = late_boost",
    ]
    assert plan["hypotheses"]["dose_response"][0]["expected"] == "positive slope"
    deff = design_effect(10_000, 0.001)
    assert plan["mde"]["mde_relative"] == pytest.approx(mde_relative(0.02, 40_000, deff, 0.05, 0.8), rel=1e-5)
    assert plan["primary_metric"] == "ctr" and "Holm" in plan["corrections"]["confirmatory"]
    assert "fixed horizon" in plan["stopping_rule"]
    assert analysis_plan(ExperimentConfig("exp-plan", THREE))["hypotheses"]["timing"] == []


def test_plan_is_hashed_stored_and_refused_after_results(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    registered = register_plan(CONFIG, db, tmp_path / "plans")
    assert verify_plan_file(registered.path, registered.sha256)
    assert registered.path.name == f"exp-plan.{registered.sha256[:12]}.json"
    con = duckdb.connect(str(db), read_only=True)
    sha, text = con.execute("SELECT sha256, plan_json FROM analysis_plans").fetchone()
    arms = con.execute("SELECT variant, role FROM experiment_variants ORDER BY position").fetchall()
    con.close()
    assert sha == registered.sha256 and plan_hash(json.loads(text)) == sha
    assert [a for a, _ in arms] == [s.name for s in DEFAULT_VARIANTS] and arms[0][1] == "control"
    # a hand-edited plan file no longer matches its hash
    edited = json.loads(registered.path.read_text())
    edited["alpha"] = 0.1
    registered.path.write_text(json.dumps(edited))
    assert not verify_plan_file(registered.path, registered.sha256)

    export = simulate_ab_export(
        VIDEOS,
        tmp_path / "inbox" / "e.csv",
        seed=1,
        days=2,
        segments=("all",),
        impressions_per_arm=500,
        experiment_id="exp-plan",
    )
    assert ingest_export(export, db, check_catalog=False).ok
    assert register_plan(CONFIG, db, tmp_path / "plans").sha256 == sha  # the same plan again: fine
    changed = ExperimentConfig("exp-plan", DEFAULT_VARIANTS, planned_days=9)
    with pytest.raises(ValueError, match="already has results"):
        register_plan(changed, db, tmp_path / "plans")
    late = register_plan(changed, db, tmp_path / "plans", allow_after_results=True)
    assert late.registered_after_results and late.sha256 != sha


def test_deviations_are_listed() -> None:
    plan = analysis_plan(
        ExperimentConfig("e", THREE, planned_videos=5, planned_impressions_per_arm=1000, planned_days=7)
    )
    cells = pd.DataFrame(
        {
            "video_id": ["a", "a", "b", "b"],
            "variant": ["baseline", "early_boost", "baseline", "late_boost"],
            "impressions": [600, 600, 600, 600],
        }
    )
    found = plan_deviations(plan, cells, (pd.Timestamp("2026-11-01"), pd.Timestamp("2026-11-03")), alpha=0.05)
    assert "planned arm 'placebo' has no results" in found
    assert "arm 'late_boost' has results but was not in the plan" in found
    assert "2 videos analysed, 5 planned" in found
    assert any(d.startswith("ran 3 day(s), 7 planned: stopped early") for d in found)
    assert any("arm 'early_boost': 600 impressions, 1000 planned" in d for d in found)
    assert "analysed at alpha=0.1, planned alpha=0.05" in plan_deviations(plan, cells, None, alpha=0.1)


def test_report_cites_the_plan_hash(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    config = ExperimentConfig("exp-cite", THREE, planned_videos=4, planned_days=3)
    registered = register_plan(config, db, tmp_path / "plans")
    export = simulate_ab_export(
        VIDEOS,
        tmp_path / "inbox" / "e.csv",
        seed=2,
        days=2,
        segments=("all",),
        impressions_per_arm=800,
        experiment_id="exp-cite",
        variants=THREE,
    )
    assert ingest_export(export, db, check_catalog=False).ok
    report = build_report(db, tmp_path / "reports")
    page = report.html_path.read_text()
    assert f"analysis plan sha256 <code>{registered.sha256}</code>" in page
    assert "ran 2 day(s), 3 planned: stopped early" in page
    stored = duckdb.connect(str(db), read_only=True).execute("SELECT plan_sha256 FROM analysis_plan_deviations").df()
    assert set(stored["plan_sha256"]) == {registered.sha256}


def _variants_table(tmp_path: Path, eligible: dict[tuple[str, str], bool] | None) -> Path:
    db = tmp_path / "w.duckdb"
    rows = []
    frames = np.zeros((6, 64, 48, 3), np.uint8)
    for i, vid in enumerate(VIDEOS["video_id"][:2]):
        for j, spec in enumerate(THREE):
            frames[:] = 40 * i + 20 * j
            path = write_video(tmp_path / "variant_videos" / vid / f"{spec.name}.mp4", frames, 12)
            # stored relative to the data directory (the warehouse's folder), as variant_videos records it
            row = {
                "video_id": vid,
                "variant": spec.name,
                "path": str(path.relative_to(tmp_path)),
                "sha256": file_sha256(path),
            }
            if eligible is not None:
                ok = eligible.get((vid, spec.name), True)
                row["eligible"] = ok
                row["exclusion_reason"] = None if ok else "manipulation check failed: 12% of the planned change"
            rows.append(row)
    con = duckdb.connect(str(db))
    con.register("v", pd.DataFrame(rows))
    con.execute("CREATE TABLE variants AS SELECT * FROM v")
    con.close()
    return db


def test_upload_manifest_without_eligibility_column(tmp_path: Path) -> None:
    db = _variants_table(tmp_path, None)
    manifest = build_upload_manifest(db, "exp-up", tmp_path / "out", THREE)
    assert not manifest.eligibility_column and "treated as eligible" in manifest.notes[0]
    rows = manifest.rows
    assert len(rows) == 6 and list(rows["variant"][:3]) == ["baseline", "early_boost", "placebo"]
    for r in rows.itertuples():
        assert decode_ad_name(r.ad_name) == ("exp-up", r.video_id, r.variant)
        assert (r.width, r.height, r.duration_s) == (48, 64, 0.5)
        assert r.sha256 == file_sha256(tmp_path / r.file)
    assert pd.read_csv(manifest.path, dtype=str)["ad_name"].tolist() == rows["ad_name"].tolist()
    stored = duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM upload_manifest").fetchone()[0]
    assert stored == 6


def test_upload_manifest_honours_eligibility_and_catches_changed_files(tmp_path: Path) -> None:
    hexid = VIDEOS["video_id"][1]
    db = _variants_table(tmp_path, {("7228023352396972034", "early_boost"): False, (hexid, "baseline"): False})
    manifest = build_upload_manifest(db, "exp-up", tmp_path / "out", THREE)
    assert manifest.eligibility_column
    assert set(zip(manifest.rows["video_id"], manifest.rows["variant"], strict=False)) == {
        ("7228023352396972034", "baseline"),
        ("7228023352396972034", "placebo"),
    }
    reasons = dict(
        zip(
            zip(manifest.excluded["video_id"], manifest.excluded["variant"], strict=False),
            manifest.excluded["reason"],
            strict=False,
        )
    )
    assert reasons[("7228023352396972034", "early_boost")].startswith("manipulation check failed")
    assert "control arm (baseline) is not eligible" in reasons[(hexid, "placebo")]
    override = build_upload_manifest(db, "exp-up", tmp_path / "out", THREE, include_ineligible=True)
    assert len(override.rows) == 6 and any("explicit override" in n for n in override.notes)
    (tmp_path / manifest.rows["file"].iat[0]).write_bytes(b"not the rendered file")
    with pytest.raises(ValueError, match="changed since it was rendered"):
        build_upload_manifest(db, "exp-up", tmp_path / "out", THREE)


def test_plan_cli_registers_and_prints_the_hash(tmp_path: Path, capsys) -> None:
    from analysis.plan_cli import main

    config = tmp_path / "exp.yaml"
    config.write_text(
        "experiment_id: cli-exp\nplanned_videos: 4\nplanned_impressions_per_arm: 80000\nplanned_days: 7\n"
    )
    assert main([str(config), "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    stored = (
        duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
        .execute("SELECT sha256 FROM analysis_plans")
        .fetchone()[0]
    )
    assert f"analysis plan sha256 {stored}" in out and "7 arms" in out and "MDE" in out
    assert "no variants rendered yet" in out
    config.write_text("experiment_id: cli-exp\nplanned_shares: {baseline: 0.9}\n")
    assert main([str(config), "--data-dir", str(tmp_path / "data")]) == 1
    assert "no planned share for" in capsys.readouterr().err
