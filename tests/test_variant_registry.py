"""One variant registry: an eighth variant, a 3-arm and a 12-arm experiment, each a config entry.

Adding an arm touches only the experiment's variant list: the plans, the renderer, export
validation, the simulator, the analysis's timing and dose contrasts and the report's order all
read it (nothing else lists variants; ``test_no_other_variant_list`` greps for one).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from align_core.experiments.ab_results import ingest_export
from align_core.experiments.config import ExperimentConfig, load_experiment_config, variants_for
from align_core.io.arrays import unpack_masks
from align_core.io.layout import DataLayout
from align_core.io.video_io import probe_video
from align_core.stimuli.editing.pipeline import calibrate_and_render
from align_core.stimuli.editing.salience import SalienceEditor
from align_core.stimuli.plans import (
    DEFAULT_VARIANTS,
    VariantSpec,
    control_name,
    dose_windows,
    load_variant_config,
    parse_variants,
    plan_variants,
    timing_variants,
    variant_names,
)
from align_demo.ab_simulator import SimulationEffects, planted_in_videos, planted_truth, simulate_ab, simulate_ab_export
from align_demo.assets import planted_vs_estimated
from align_demo.corpus import generate_demo_corpus
from analysis.preregistration import register_plan
from analysis.report import build_report

REPO = Path(__file__).resolve().parents[1]
EIGHTH = VariantSpec("early_reduction", "early", 0.5, "reduce")
EIGHT = DEFAULT_VARIANTS + (EIGHTH,)
THREE = tuple(s for s in DEFAULT_VARIANTS if s.name in ("baseline", "early_boost", "placebo"))
TWELVE = parse_variants(
    [
        {"name": "control", "window": "none", "factor": 1, "kind": "identity", "role": "control"},
        {"name": "placebo", "window": "full", "factor": 1.5, "kind": "placebo"},
    ]
    + [
        {"name": f"{w}_x{str(f).replace('.', '')}", "window": w, "factor": f, "kind": "boost"}
        for f in (1.25, 1.5)
        for w in ("early", "middle", "late", "full")
    ]
    + [{"name": f"{w}_cut", "window": w, "factor": 0.5, "kind": "reduce"} for w in ("early", "late")]
)


def _videos(n: int) -> pd.DataFrame:
    industries = ["Beauty", "Fashion", "Electronics"]
    return pd.DataFrame(
        {"video_id": [f"72{i:017d}" for i in range(n)], "industry": [industries[i % 3] for i in range(n)]}
    )


def test_roles_default_from_kind_and_are_checked() -> None:
    assert [s.role for s in DEFAULT_VARIANTS] == ["control"] + ["treatment"] * 5 + ["placebo"]
    assert VariantSpec("b", "early", 1.5, "boost").role == "treatment"
    with pytest.raises(ValueError, match="a control must be of kind identity"):
        VariantSpec("b", "early", 1.5, "boost", "control")
    with pytest.raises(ValueError, match="exactly one control"):
        parse_variants([DEFAULT_VARIANTS[0], VariantSpec("sham", "none", 1.0, "identity", "control")])
    assert control_name(TWELVE) == "control"


def test_registry_derives_timing_and_dose_arms() -> None:
    assert timing_variants(DEFAULT_VARIANTS) == ("early_boost", "middle_boost", "late_boost")
    assert dose_windows(DEFAULT_VARIANTS) == {
        "early_boost": "early",
        "middle_boost": "middle",
        "late_boost": "late",
        "full_boost": "full",
        "reduction": "middle",
        "placebo": "full",
    }
    assert timing_variants(THREE) == ("early_boost",)
    assert timing_variants(TWELVE) == ("early_x15", "middle_x15", "late_x15")  # one dose, three times


def test_lab_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "experiment_id: lab-3arm\n"
        "variants:\n"
        "  - {name: baseline, window: none, factor: 1, kind: identity, role: control}\n"
        "  - {name: early_boost, window: early, factor: 1.5, kind: boost}\n"
        "  - {name: placebo, window: full, factor: 1.5, kind: placebo}\n"
        "planned_shares: {baseline: 0.5, early_boost: 0.25, placebo: 0.25}\n"
        "planned_videos: 6\nplanned_impressions_per_arm: 50000\nplanned_days: 3\n"
    )
    config = load_experiment_config(path)
    assert config.variant_names == ("baseline", "early_boost", "placebo") and config.control == "baseline"
    assert load_variant_config(path) == THREE  # what variant_plans' variants_file reads
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("experiment_id: lab-default\n")
    assert load_variant_config(defaults) == DEFAULT_VARIANTS
    path.write_text("experiment_id: x\nvariants: [{name: a, window: none, factor: 1, kind: identity, colour: red}]\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_experiment_config(path)


def test_no_other_variant_list() -> None:
    """Production code lists variant names only in DEFAULT_VARIANTS."""
    pattern = re.compile(r"""["'](early_boost|middle_boost|late_boost|full_boost)["']""")
    offenders = []
    for folder in ("align_core", "align_assets", "analysis"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "plans.py" and path.parent.name == "stimuli":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.fixture(scope="module")
def tiny_demo_video(tmp_path_factory, shared_data: Path):
    layout = DataLayout(tmp_path_factory.mktemp("eighth") / "data").ensure()
    corpus = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        keywords_source=shared_data / "keywords.csv",
        width=96,
        height=160,
        fps=8,
        duration_range_s=(4.0, 4.0),
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
    )
    return corpus.videos[0]


@pytest.mark.slow  # runs the pipeline
def test_eighth_variant_is_planned_and_rendered(tiny_demo_video, tmp_path: Path) -> None:
    video = tiny_demo_video
    with np.load(video.mask_path, allow_pickle=False) as data:
        masks = unpack_masks(data["bits"], data["shape"])
    attention = np.where(masks, 0.3, 0.1).astype(np.float32)  # a stand-in A_t: rendering only needs a map
    alignment = (attention * masks).sum(axis=(1, 2)) / attention.sum(axis=(1, 2))
    scenes = [(s.start_frame, s.end_frame) for s in video.scenes]
    plans = plan_variants(video.video_id, alignment, video.fps, scenes, EIGHT)
    assert list(plans.plans) == list(variant_names(EIGHT))
    early = np.array([w == "early" for w in plans.frame_windows])
    np.testing.assert_allclose(plans["early_reduction"].frame_factor, np.where(early, 0.5, 1.0))
    assert plans["early_reduction"].kind_at(int(np.flatnonzero(early)[0])) == "reduce"

    out = calibrate_and_render(
        video.path, plans, masks, attention, SalienceEditor(), tmp_path / "variants", None, keyframe_stride=4, seed=1
    )
    assert set(out.render.variant_paths) == set(variant_names(EIGHT))
    source = probe_video(video.path)
    probe = probe_video(out.render.variant_paths["early_reduction"])
    assert (probe.video_codec, probe.frame_count, probe.width, probe.height) == (
        "h264",
        source.frame_count,
        source.width,
        source.height,
    )
    assert (
        out.render.manifest["variants"]["early_reduction"]["sha256"]
        != out.render.manifest["variants"]["baseline"]["sha256"]
    )


def _run_experiment(tmp_path: Path, experiment_id: str, registry, n_videos: int, **sim) -> tuple:
    db = tmp_path / "warehouse.duckdb"
    videos = _videos(n_videos)
    con = duckdb.connect(str(db))
    con.register("v", videos)
    con.execute("CREATE TABLE videos AS SELECT * FROM v")
    con.close()
    config = ExperimentConfig(
        experiment_id,
        registry,
        planned_videos=n_videos,
        planned_days=3,
        planned_impressions_per_arm=1000.0 * n_videos * 3,
    )
    plan = register_plan(config, db, tmp_path / "experiments")
    inbox = tmp_path / "inbox"
    export = simulate_ab_export(
        videos,
        inbox / f"{experiment_id}.csv",
        seed=3,
        days=3,
        segments=("all",),
        impressions_per_arm=1500,
        experiment_id=experiment_id,
        variants=registry,
        **sim,
    )
    report = ingest_export(export, db)
    assert report.ok, report.errors[:5]
    result = build_report(db, tmp_path / "reports")
    return db, videos, plan, result


@pytest.mark.slow  # runs the pipeline
def test_eighth_variant_is_ingested_and_reported(tmp_path: Path) -> None:
    db, videos, plan, result = _run_experiment(tmp_path, "exp-eight", EIGHT, 9)
    lift = result.tables["analysis_lift"]
    ctr = lift[lift["metric"] == "ctr"]
    assert list(ctr["variant"]) == list(variant_names(EIGHT))[1:]  # registry order, the eighth last
    truth = planted_truth(videos, SimulationEffects(), variants=EIGHT)
    assert truth["ctr"]["early_reduction"] < 0
    row = ctr[ctr["variant"] == "early_reduction"].iloc[0]
    assert row["rel_ci_low"] <= truth["ctr"]["early_reduction"] <= row["rel_ci_high"]
    page = result.html_path.read_text()
    assert "early_reduction" in page and plan.sha256 in page
    deviations = result.tables["analysis_plan_deviations"]
    assert list(deviations["deviation"]) == ["none: the analysis followed the plan"]
    # an arm outside the registry is rejected by name, with the registry in the message
    bad = simulate_ab_export(
        videos,
        tmp_path / "inbox" / "ninth.csv",
        seed=4,
        days=1,
        segments=("all",),
        experiment_id="exp-eight",
        variants=(EIGHT[0], VariantSpec("late_reduction", "late", 0.5, "reduce")),
    )
    rejected = ingest_export(bad, db)
    assert not rejected.ok and "unknown variant 'late_reduction' for experiment 'exp-eight'" in rejected.errors[0]


@pytest.mark.slow  # runs the pipeline
def test_three_arm_experiment_end_to_end(tmp_path: Path) -> None:
    db, _, _, result = _run_experiment(tmp_path, "exp-three", THREE, 6)
    assert variants_for(db, "exp-three") == THREE
    lift = result.tables["analysis_lift"]
    assert set(lift["variant"]) == {"early_boost", "placebo"}
    assert result.tables["analysis_timing"].empty  # one timed arm: nothing to contrast, no crash


@pytest.mark.slow  # runs the pipeline
def test_twelve_arm_experiment_end_to_end(tmp_path: Path) -> None:
    db, videos, _, result = _run_experiment(tmp_path, "exp-twelve", TWELVE, 12)
    lift = result.tables["analysis_lift"]
    assert list(lift[lift["metric"] == "ctr"]["variant"]) == list(variant_names(TWELVE))[1:]
    timing = result.tables["analysis_timing"]
    assert {"early_x15 vs middle_x15", "early_x15 vs late_x15", "middle_x15 vs late_x15"} <= set(timing["contrast"])
    ctr = lift[lift["metric"] == "ctr"].set_index("variant")
    # what the matched estimates target: the lifts planted in these 12 videos (the same draws as the export)
    drawn = simulate_ab(
        videos, seed=3, days=3, segments=("all",), impressions_per_arm=1500, experiment_id="exp-twelve", variants=TWELVE
    )
    planted = planted_in_videos(drawn.planted)
    # every one of the eleven CTR lifts inside its simultaneous 95 % interval (the demo check's rule) ...
    recovered = planted_vs_estimated(lift[lift["metric"] == "ctr"], {"ctr": planted["ctr"]})
    assert len(recovered) == 11 and recovered["covered"].all(), recovered
    # ... and the estimates follow the planted effects across the arms
    assert np.corrcoef(pd.Series(planted["ctr"])[ctr.index], ctr["rel_lift"])[0, 1] > 0.6
    expected = pd.Series(planted_truth(videos, SimulationEffects(), variants=TWELVE)["ctr"])
    assert np.corrcoef(expected[ctr.index], ctr["rel_lift"])[0, 1] > 0.6
    het = result.tables["analysis_heterogeneity"]
    assert {"Beauty", "Fashion", "Electronics"} <= set(het.get("industry", pd.Series(dtype=str)).dropna())


def test_demo_experiment_has_two_videos_in_each_of_three_industries(tmp_path: Path, shared_data: Path) -> None:
    """The demo's default corpus (8 ads, one empty and one call-to-action keyword) edits six
    product ads, paired by industry, so the A/B report's industry section has rows."""
    corpus = generate_demo_corpus(
        tmp_path / "data",
        n_videos=8,
        seed=7,
        keywords_source=shared_data / "keywords.csv",
        width=64,
        height=112,
        fps=6,
        duration_range_s=(4.0, 4.0),
    )
    products = [v for v in corpus.videos if v.keyword_kind == "product"]
    assert all(v.has_scene_rows for v in products)  # the industry reaches the catalog through the scene rows
    edited = pd.Series([v.industry for v in products])
    counts = edited.value_counts()
    assert len(edited) == 6 and len(counts) >= 3 and (counts >= 2).all(), counts.to_dict()


def test_registered_config_round_trips(tmp_path: Path) -> None:
    from align_core.experiments.config import register_experiment_config, registered_configs

    config = ExperimentConfig("exp-design", THREE, design="unpaired", planned_days=4, name="user-randomised")
    register_experiment_config(tmp_path / "w.duckdb", config)
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    stored = registered_configs(con)["exp-design"]
    con.close()
    assert stored == config and stored.design == "unpaired"
