"""Demo-profile Dagster assets: the simulated A/B export and the check that the analysis recovers it.

Only the demo profile's ``Definitions`` include these (:mod:`align_demo.definitions` merges them
into production's); the production graph never depends on them.
"""

import datetime as _dt
import json

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.experiments.config import ExperimentConfig
from align_core.experiments.upload_manifest import build_upload_manifest
from align_core.io.atomic import atomic_write_text
from align_core.io.layout import DataLayout
from align_core.io.warehouse import read_connection, table_exists
from align_core.stimuli.plans import DEFAULT_VARIANTS
from align_demo.ab_simulator import (
    SimulationEffects,
    matched_planted_truth,
    planted_in_videos,
    simulate_uploaded_ab,
    write_export,
)

__all__ = [
    "AB_RESULTS_DEPS",
    "demo_assets",
    "demo_checks",
    "demo_experiment",
    "demo_truth",
    "nothing_edited",
    "planted_vs_estimated",
]

DEMO_EXPERIMENT_ID = "demo-exp-1"
DEMO_EXPORT_NAME = "demo-exp-1.csv"
DEMO_INDUSTRY_MODIFIERS = {"Beauty": 1.5, "Electronics": 0.5}
DEMO_DOSE_SLOPE = 0.5  # log CTR per unit of achieved alignment change
#: ``ab_results`` runs after the simulated export in the demo profile's graph.
AB_RESULTS_DEPS = ("demo_ab_export",)


class DemoExportSettings(Config):
    include_ineligible: bool = Field(
        default=False,
        description="explicit override: also simulate variants that did not pass their checks (variants.eligible false)",
    )


def nothing_edited(layout: DataLayout) -> str:
    """Why there are no variants, and what to do (rather than a bare 'no variants table')."""
    skipped = layout.artifact_files("variant_plans", "skipped")
    if not skipped:
        return "no variants table: materialize variant_videos and the variants table first"
    reasons = "; ".join(
        f"{json.loads(path.read_text())['video_id']}: {json.loads(path.read_text())['reason']}" for path in skipped[:5]
    )
    return (
        f"no variant was rendered, so there is no experiment to simulate: {len(skipped)} video(s) were skipped for "
        f"editing ({reasons}). Give them a visible product keyword in raw/keywords.csv and re-run variant_plans "
        "and variant_videos."
    )


@asset(
    deps=["videos", "variants", "manipulation_check"],
    group_name="experiments",
    kinds={"python", "csv"},
)
def demo_ab_export(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource, config: DemoExportSettings
) -> MaterializeResult:
    """Simulate the A/B test of the variants and drop its export in the inbox (demo profile only).

    The export has exactly the schema ad platforms deliver; its planted effects (per variant,
    per industry, and a dose term on the achieved alignment change) are written beside it so the
    report can be checked against the truth. Only eligible variants (passed their checks:
    ``variants.eligible``) are in the experiment unless ``include_ineligible`` is set.
    """
    from analysis.preregistration import register_plan  # statsmodels: loaded when the asset runs
    from analysis.timing import select_doses

    layout = platform.layout
    arms, videos, measured = _experiment_inputs(warehouse.database, layout)
    _require_an_arm(arms, config.include_ineligible)
    videos["industry"] = videos["industry"].fillna("unknown")
    # The dose term uses each variant's achieved change in its own window: the same doses the
    # analysis regresses on (analysis.timing.select_doses), so the planted slope is recoverable.
    doses = select_doses(measured) if measured is not None and len(measured) else None
    effects = SimulationEffects(
        industry_modifier=DEMO_INDUSTRY_MODIFIERS, ctr_dose_slope=DEMO_DOSE_SLOPE if doses is not None else 0.0
    )
    # Before any result: the experiment's registry and its hashed analysis plan, then the upload
    # manifest (eligible variants only, unless include_ineligible); the simulated export covers
    # exactly the uploaded ads.
    experiment = demo_experiment(len(videos))
    plan = register_plan(experiment, warehouse.database, layout.root / "experiments")
    manifest = build_upload_manifest(
        warehouse.database,
        experiment.experiment_id,
        layout.root / "experiments",
        experiment.variants,
        include_ineligible=config.include_ineligible,
    )
    sim = simulate_uploaded_ab(
        videos,
        manifest.rows,
        effects=effects,
        variants=experiment.variants,
        seed=11,
        days=7,
        impressions_per_arm=4000,
        achieved_delta=doses,
        start_date=experiment.start_date,
    )
    path = write_export(sim.rows, layout.ab_inbox_dir / DEMO_EXPORT_NAME)
    truth = demo_truth(videos, manifest.rows, effects, doses, sim.planted, experiment)
    truth_path = atomic_write_text(layout.artifact("demo_ab_export", "truth"), json.dumps(truth, indent=2))
    return MaterializeResult(
        metadata={
            "export": MetadataValue.path(str(path)),
            "videos": len(videos),
            "arms": len(manifest.rows),
            "excluded_variants": table_markdown(manifest.excluded),
            "include_ineligible": config.include_ineligible,
            "planted_ctr_lift": MetadataValue.json(truth["ctr"]),
            "planted_truth": MetadataValue.path(str(truth_path)),
            "analysis_plan_sha256": MetadataValue.text(plan.sha256),
            "analysis_plan": MetadataValue.path(str(plan.path)),
            "upload_manifest": MetadataValue.path(str(manifest.path)),
            "manifest_notes": MetadataValue.md("\n".join(f"- {n}" for n in manifest.notes) or "none"),
            "note": "SIMULATED results (demo profile): effects are planted, see SimulationEffects",
        }
    )


def demo_truth(
    videos: pd.DataFrame,
    manifest: pd.DataFrame,
    effects: SimulationEffects,
    doses: pd.DataFrame | None,
    planted: pd.DataFrame,
    experiment: ExperimentConfig,
) -> dict:
    """The truth file: each arm's lift as planted in the videos it and the control ran in.

    ``ctr``/``cvr``/``watch_time`` are what the simulator actually planted in these videos (each
    video's lift deviates from the arm's mean by its own draw), i.e. what the matched estimate
    estimates; ``expected_over_videos`` keeps the mean over hypothetical videos (what the
    calibration bench checks coverage of, over thousands of simulated experiments).
    """
    truth = matched_planted_truth(videos, manifest, effects, achieved_delta=doses, variants=experiment.variants)
    truth["expected_over_videos"] = {m: truth[m] for m in ("ctr", "cvr", "watch_time")}
    truth.update(planted_in_videos(planted, manifest))
    truth["truth_basis"] = "lifts planted in the matched videos (ratio of expected sums given each video's draws)"
    return truth


def _experiment_inputs(database: str, layout: DataLayout) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The variants' arms, the edited videos with their industry, and the achieved alignment changes.

    Raises with what to do when nothing was edited (no variants table, or no video with variants).
    """
    from analysis.queries import achieved_deltas

    with read_connection(database) as con:
        if not table_exists(con, "variants"):
            raise ValueError(nothing_edited(layout))
        arms = con.execute(
            "SELECT video_id, variant, eligible, exclusion_reason FROM variants ORDER BY video_id, variant"
        ).df()
        # Only videos whose variants exist can be in an experiment (screened ones were never edited).
        videos = con.execute(
            "SELECT video_id, industry FROM videos WHERE video_id IN (SELECT DISTINCT video_id FROM variants) ORDER BY video_id"
        ).df()
        measured = achieved_deltas(con)
    if videos.empty:
        raise ValueError(nothing_edited(layout))
    return arms, videos, measured


def _require_an_arm(arms: pd.DataFrame, include_ineligible: bool) -> None:
    """Refuse an experiment with no variant to simulate, naming one excluded variant and why."""
    excluded = arms[~arms["eligible"].astype(bool)]
    kept = arms if include_ineligible else arms[arms["eligible"].astype(bool)]
    if kept.empty:
        raise ValueError(
            f"no variant passed its checks ({len(excluded)} excluded, e.g. {excluded['video_id'].iloc[0]}/"
            f"{excluded['variant'].iloc[0]}: {excluded['exclusion_reason'].iloc[0]}); see the variants table's "
            "exclusion_reason, or set include_ineligible to simulate them anyway"
        )


def demo_experiment(n_videos: int) -> ExperimentConfig:
    """The demo's registered experiment: the default variants, a week from 2026-11-01."""
    return ExperimentConfig(
        DEMO_EXPERIMENT_ID,
        DEFAULT_VARIANTS,
        name="demo: timing of the product boost",
        planned_videos=n_videos,
        planned_impressions_per_arm=4000.0 * 7 * n_videos,
        planned_days=7,
        start_date=_dt.date(2026, 11, 1),
    )


@asset_check(
    asset="analysis_report",
    additional_deps=["demo_ab_export"],
    description="Demo profile: every planted (simulated) effect lies inside its estimate's simultaneous 95% interval "
    "(Bonferroni over the effects compared).",
)
def planted_effects_recovered(platform: PlatformResource, warehouse: DuckDBResource) -> AssetCheckResult:
    truth_path = platform.layout.artifact("demo_ab_export", "truth")
    if not truth_path.exists():
        return AssetCheckResult(
            passed=False, metadata={"reason": f"{truth_path} does not exist: materialize demo_ab_export"}
        )
    with read_connection(warehouse.database) as con:
        lift = con.execute("SELECT * FROM analysis_lift").df() if table_exists(con, "analysis_lift") else pd.DataFrame()
        dose = (
            con.execute("SELECT * FROM analysis_dose_response").df()
            if table_exists(con, "analysis_dose_response")
            else None
        )
    recovery = planted_vs_estimated(lift, json.loads(truth_path.read_text()), dose)
    if recovery.empty:
        return AssetCheckResult(
            passed=True,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "planted_effects_recovered": "no estimates to compare (too few videos for cluster-robust intervals)"
            },
        )
    covered = int(recovery["covered"].sum())
    not_estimable = sorted(
        {f"{m} {v}" for m, v in zip(lift["metric"], lift["variant"], strict=False)}
        - {f"{m} {v}" for m, v in zip(recovery["metric"], recovery["variant"], strict=False)}
    )
    return AssetCheckResult(
        passed=covered == len(recovery),
        severity=AssetCheckSeverity.WARN,  # simultaneous intervals still miss some true effect 1 time in 20
        metadata={
            "planted_effects_recovered": f"{covered}/{len(recovery)} inside their simultaneous 95% intervals "
            f"(Bonferroni over {len(recovery)})",
            "planted_vs_estimated": table_markdown(recovery),
            "not_estimable": ", ".join(not_estimable) or "none",
        },
    )


def planted_vs_estimated(lift: pd.DataFrame, truth: dict, dose: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each simulated relative lift (and the within-variant CTR dose slope) beside its estimate and CI.

    ``planted`` is the lift planted in the matched videos (:func:`demo_truth`), the value the
    estimate targets; ``expected_over_videos`` is shown beside it for reference.

    The question "were all planted effects recovered?" is about the whole family, so ``covered``
    uses simultaneous 95 % intervals (Bonferroni over the k effects compared, on each estimate's
    own t reference): with k separate 95 % intervals all would cover only about 0.95^k of the time
    (38 % for 19) even with a perfect estimator. The per-effect 95 % interval is shown beside it.

    Only rows with an interval are compared: a contrast the report could not estimate (fewer than
    2 videos ran both arms) has no CI to cover anything and is left out, not counted as a miss."""
    rows = _dose_rows(dose, truth.get("ctr_dose_slope_log")) + _lift_rows(lift, truth)
    columns = [
        "metric",
        "variant",
        "planted",
        "expected_over_videos",
        "estimate",
        "ci_low",
        "ci_high",
        "simultaneous_low",
        "simultaneous_high",
        "covered",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    from scipy import stats  # loaded when the check runs, not when the definitions are imported

    table = pd.DataFrame(rows)
    crit = stats.t.ppf(1 - FAMILY_ALPHA / (2 * len(table)), table["df"])
    centre, scale = table["centre"], table["se"]
    low, high = centre - crit * scale, centre + crit * scale
    relative = table["relative"]
    table["simultaneous_low"] = np.where(relative, np.exp(low) - 1, low)
    table["simultaneous_high"] = np.where(relative, np.exp(high) - 1, high)
    table["covered"] = (table["simultaneous_low"] <= table["planted"]) & (
        table["planted"] <= table["simultaneous_high"]
    )
    return table[columns]


#: Family-wise error rate of the planted-effects check's simultaneous intervals.
FAMILY_ALPHA = 0.05


def _dose_rows(dose: pd.DataFrame | None, slope: float | None) -> list[dict]:
    """The within-variant CTR dose slope (log lift per unit alignment change) against the planted one."""
    if dose is None or not len(dose) or not slope:
        return []
    within = dose[(dose["metric"] == "ctr") & dose["model"].str.contains("within variant")]
    return [
        {
            "metric": "ctr dose slope (log lift per unit alignment change)",
            "variant": "all (within variant)",
            "planted": slope,
            "expected_over_videos": slope,
            "estimate": row["slope"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "centre": row["slope"],
            "se": row["slope_se"],
            "df": row["df"],
            "relative": False,
        }
        for _, row in within.iterrows()
        if np.isfinite(row["slope_se"]) and np.isfinite(row["df"])
    ]


def _lift_rows(lift: pd.DataFrame, truth: dict) -> list[dict]:
    """Each relative lift with an interval against the lift planted in its matched videos."""
    rows: list[dict] = []
    expected = truth.get("expected_over_videos", {})
    for _, row in lift.iterrows():
        metric = str(row["metric"])
        planted = truth.get(metric, {}).get(str(row["variant"]))
        if planted is None:
            continue
        if not (np.isfinite(row["rel_ci_low"]) and np.isfinite(row["rel_ci_high"])):
            continue  # no interval (e.g. one video ran both arms): listed by the report, nothing to cover
        rows.append(
            {
                "metric": metric,
                "variant": row["variant"],
                "planted": planted,
                "expected_over_videos": expected.get(metric, {}).get(str(row["variant"]), np.nan),
                "estimate": row["rel_lift"],
                "ci_low": row["rel_ci_low"],
                "ci_high": row["rel_ci_high"],
                "centre": row["log_ratio"],
                "se": row["log_se"],
                "df": row["df"],
                "relative": True,
            }
        )
    return rows


demo_assets = [demo_ab_export]
demo_checks = [planted_effects_recovered]
