"""A/B results in DuckDB (inbox exports, or the demo simulator) and the analysis report."""

import datetime as _dt
import json

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    AutomationCondition,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset,
    sensor,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.ab_results import inbox_mapping, ingest_export, scan_inbox
from align_core.atomic import atomic_write_text
from align_core.experiment import ExperimentConfig
from align_core.upload_manifest import build_upload_manifest
from align_core.variants import DEFAULT_VARIANTS
from align_core.warehouse import read_connection, table_exists
from analysis.queries import achieved_deltas
from analysis.preregistration import register_plan
from analysis.report import build_report
from analysis.timing import select_doses

DEMO_EXPERIMENT_ID = "demo-exp-1"
DEMO_EXPORT_NAME = "demo-exp-1.csv"
DEMO_INDUSTRY_MODIFIERS = {"Beauty": 1.5, "Electronics": 0.5}
DEMO_DOSE_SLOPE = 0.5  # log CTR per unit of achieved alignment change
TRUTH_FILE = "planted_truth.json"


class DemoExportSettings(Config):
    include_ineligible: bool = Field(
        default=False,
        description="explicit override: also simulate variants that did not pass their checks (variants.eligible false)",
    )


def _nothing_edited(layout) -> str:
    """Why there are no variants, and what to do (rather than a bare 'no variants table')."""
    skipped = sorted((layout.artifacts_dir / "variant_plans").glob("*/skipped.json"))
    if not skipped:
        return "no variants table: materialize variant_videos and the variants table first"
    reasons = "; ".join(f"{json.loads(path.read_text())['video_id']}: {json.loads(path.read_text())['reason']}" for path in skipped[:5])
    return (f"no variant was rendered, so there is no experiment to simulate: {len(skipped)} video(s) were skipped for "
            f"editing ({reasons}). Give them a visible product keyword in raw/keywords.csv and re-run variant_plans "
            "and variant_videos.")


@asset(
    deps=["videos", "variants", "manipulation_check"],
    group_name="experiments",
    kinds={"python", "csv"},
)
def demo_ab_export(context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource,
                   config: DemoExportSettings) -> MaterializeResult:
    """Demo profile only: simulate the A/B test of the variants and drop its export in the inbox.

    The export has exactly the schema ad platforms deliver; its planted effects (per variant,
    per industry, and a dose term on the achieved alignment change) are written beside it so the
    report can be checked against the truth. Under the research profile real exports arrive
    in the inbox instead and this asset refuses to run. Only eligible variants (passed their
    checks: ``variants.eligible``) are in the experiment unless ``include_ineligible`` is set.
    """
    if platform.profile != "demo":
        raise ValueError("demo_ab_export simulates results for the demo profile only; drop real exports in the inbox")
    from align_demo.ab_simulator import SimulationEffects, planted_truth, simulate_uploaded_export
    layout = platform.layout
    with read_connection(warehouse.database) as con:
        if not table_exists(con, "variants"):
            raise ValueError(_nothing_edited(layout))
        arms = con.execute("SELECT video_id, variant, eligible, exclusion_reason FROM variants ORDER BY video_id, variant").df()
        # Only videos whose variants exist can be in an experiment (screened ones were never edited).
        videos = con.execute(
            "SELECT video_id, industry FROM videos WHERE video_id IN (SELECT DISTINCT video_id FROM variants) ORDER BY video_id"
        ).df()
        measured = achieved_deltas(con)
    if videos.empty:
        raise ValueError(_nothing_edited(layout))
    excluded = arms[~arms["eligible"].astype(bool)]
    kept = arms if config.include_ineligible else arms[arms["eligible"].astype(bool)]
    if kept.empty:
        raise ValueError(
            f"no variant passed its checks ({len(excluded)} excluded, e.g. {excluded['video_id'].iloc[0]}/"
            f"{excluded['variant'].iloc[0]}: {excluded['exclusion_reason'].iloc[0]}); see the variants table's "
            "exclusion_reason, or set include_ineligible to simulate them anyway"
        )
    videos["industry"] = videos["industry"].fillna("unknown")
    # The dose term uses each variant's achieved change in its own window: the same doses the
    # analysis regresses on (analysis.timing.select_doses), so the planted slope is recoverable.
    doses = select_doses(measured) if measured is not None and len(measured) else None
    effects = SimulationEffects(industry_modifier=DEMO_INDUSTRY_MODIFIERS, ctr_dose_slope=DEMO_DOSE_SLOPE if doses is not None else 0.0)
    # Before any result: the experiment's registry and its hashed analysis plan, then the upload
    # manifest (eligible variants only, unless include_ineligible); the simulated export covers
    # exactly the uploaded ads.
    experiment = ExperimentConfig(
        DEMO_EXPERIMENT_ID, DEFAULT_VARIANTS, name="demo: timing of the product boost", planned_videos=len(videos),
        planned_impressions_per_arm=4000.0 * 7 * len(videos), planned_days=7, start_date=_dt.date(2026, 11, 1),
    )
    plan = register_plan(experiment, warehouse.database, layout.root / "experiments")
    manifest = build_upload_manifest(warehouse.database, experiment.experiment_id, layout.root / "experiments",
                                     experiment.variants, include_ineligible=config.include_ineligible)
    path = simulate_uploaded_export(
        videos, manifest.rows, layout.ab_inbox_dir / DEMO_EXPORT_NAME, effects=effects, variants=experiment.variants,
        seed=11, days=7, impressions_per_arm=4000, achieved_delta=doses, start_date=experiment.start_date,
    )
    truth = planted_truth(videos, effects, achieved_delta=doses, variants=experiment.variants)
    truth_path = atomic_write_text(layout.artifact_dir("demo_ab_export") / TRUTH_FILE, json.dumps(truth, indent=2))
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


@asset(
    deps=["demo_ab_export"],
    group_name="experiments",
    automation_condition=AutomationCondition.eager(),
    kinds={"duckdb"},
)
def ab_results(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    """Ingest every export waiting in the inbox: validated whole, upserted on the natural key.

    A bad file is moved to ``rejected/`` with an errors file and changes nothing stored; the
    others still land. Re-ingesting a file replaces its rows with themselves.
    """
    layout = platform.layout
    reports = [ingest_export(path, layout.warehouse_path, mapping=inbox_mapping(path, layout.ab_inbox_dir))
               for path in scan_inbox(layout.ab_inbox_dir)]
    for report in reports:
        if report.ok:
            context.log.info(f"ingested {report.source.name}: {report.rows} rows ({report.rows_replaced} replaced)")
        else:
            context.log.error(f"rejected {report.source.name}:\n" + "\n".join(report.errors[:20]))
    summary = pd.DataFrame(
        [{"file": r.source.name, "status": r.status, "rows": r.rows, "replaced": r.rows_replaced,
          "impressions": r.impressions, "errors": len(r.errors)} for r in reports]
    )
    with read_connection(layout.warehouse_path) as con:
        stored = con.execute("SELECT count(*), coalesce(sum(impressions), 0) FROM ab_results").fetchone() if table_exists(con, "ab_results") else (0, 0)
    rejected = [r for r in reports if not r.ok]
    return MaterializeResult(
        metadata={
            "files": table_markdown(summary) if len(summary) else MetadataValue.md("*(inbox empty)*"),
            "rejected_files": len(rejected),
            "rejections": MetadataValue.md(
                "\n\n".join(f"**{r.source.name}**\n```\n" + "\n".join(r.errors[:10]) + "\n```" for r in rejected) or "none"
            ),
            "rows_stored": int(stored[0]),
            "impressions_stored": int(stored[1]),
        }
    )


@sensor(
    name="ab_export_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=["ab_results"],
    description="Ingests A/B exports dropped into data/inbox/ab_results (results schema) or its "
    "tiktok_split_test/, meta_ads_manager/, generic_long/ subfolders (platform exports through that mapping).",
)
def ab_export_sensor(context: SensorEvaluationContext, platform: PlatformResource):
    waiting = scan_inbox(platform.layout.ab_inbox_dir)
    if not waiting:
        return SkipReason(f"no exports waiting in {platform.layout.ab_inbox_dir}")
    key = ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in waiting)
    return RunRequest(run_key=key)


@asset(
    deps=["ab_results", "videos", "scenes", "manipulation_check"],
    group_name="experiments",
    automation_condition=AutomationCondition.eager(),
    kinds={"python", "html", "duckdb"},
)
def analysis_report(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
    """Lift, heterogeneity by industry, timing, dose-response and guardrails; HTML + DuckDB tables."""
    layout = platform.layout
    report = build_report(layout.warehouse_path, layout.reports_dir)
    metadata = {
        "headline": MetadataValue.md(report.headline_markdown),
        "report": MetadataValue.path(str(report.html_path)),
        "experiments": MetadataValue.text(", ".join(report.experiments) or "(none)"),
        "notes": MetadataValue.md("\n".join(f"- {n}" for n in report.notes) or "none"),
    }
    truth_path = layout.artifact_dir("demo_ab_export") / TRUTH_FILE
    if truth_path.exists():
        recovery = planted_vs_estimated(
            report.tables["analysis_lift"], json.loads(truth_path.read_text()), report.tables["analysis_dose_response"]
        )
        if recovery.empty:
            metadata["planted_effects_recovered"] = MetadataValue.text("no estimates to compare (too few videos for cluster-robust intervals)")
        else:
            metadata["planted_vs_estimated"] = table_markdown(recovery)
            metadata["planted_effects_recovered"] = MetadataValue.text(
                f"{int(recovery['covered'].sum())}/{len(recovery)} inside their 95% CI"
            )
    return MaterializeResult(metadata=metadata)


def planted_vs_estimated(lift: pd.DataFrame, truth: dict, dose: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each simulated relative lift (and the within-variant CTR dose slope) beside its estimate and CI."""
    rows: list[dict] = []
    slope = truth.get("ctr_dose_slope_log")
    if dose is not None and len(dose) and slope:
        within = dose[(dose["metric"] == "ctr") & dose["model"].str.contains("within variant")]
        for _, row in within.iterrows():
            rows.append({
                "metric": "ctr dose slope (log lift per unit alignment change)", "variant": "all (within variant)",
                "planted": slope, "estimate": row["slope"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                "covered": bool(row["ci_low"] <= slope <= row["ci_high"]),
            })
    for _, row in lift.iterrows():
        metric = str(row["metric"])
        planted = truth.get(metric, {}).get(str(row["variant"]))
        if planted is None:
            continue
        rows.append({
            "metric": metric, "variant": row["variant"], "planted": planted,
            "estimate": row["rel_lift"], "ci_low": row["rel_ci_low"], "ci_high": row["rel_ci_high"],
            "covered": bool(row["rel_ci_low"] <= planted <= row["rel_ci_high"]),
        })
    return pd.DataFrame(rows, columns=["metric", "variant", "planted", "estimate", "ci_low", "ci_high", "covered"])
