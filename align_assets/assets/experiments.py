"""A/B results in DuckDB (exports dropped in the inbox) and the analysis report.

Both go through the ``warehouse`` resource (``DuckDBResource``): overriding it redirects them
with every other table. The demo's simulated export is a demo-profile asset in ``align_demo``.
"""

from collections.abc import Sequence

import pandas as pd
from dagster import (
    AssetExecutionContext,
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

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.experiments.ab_results import inbox_mapping, ingest_export, scan_inbox, stored_ab_totals

__all__ = [
    "ab_results_asset",
    "analysis_report",
]


def ab_results_asset(extra_deps: Sequence[str] = ()):
    """The ``ab_results`` asset. Production ingests whatever lands in the inbox (the sensor triggers it);
    the demo profile passes its simulated export's asset as ``extra_deps`` so the demo runs it first."""

    @asset(
        name="ab_results",
        deps=list(extra_deps),
        group_name="experiments",
        automation_condition=AutomationCondition.eager(),
        kinds={"duckdb"},
    )
    def ab_results(
        context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> MaterializeResult:
        """Ingest every export waiting in the inbox: validated whole, upserted on the natural key.

        A bad file is moved to ``rejected/`` with an errors file and changes nothing stored; the
        others still land. Re-ingesting a file replaces its rows with themselves.
        """
        inbox = platform.layout.ab_inbox_dir
        reports = [
            ingest_export(path, warehouse.database, mapping=inbox_mapping(path, inbox)) for path in scan_inbox(inbox)
        ]
        for report in reports:
            if report.ok:
                context.log.info(f"ingested {report.source.name}: {report.rows} rows ({report.rows_replaced} replaced)")
            else:
                context.log.error(f"rejected {report.source.name}:\n" + "\n".join(report.errors[:20]))
        summary = pd.DataFrame(
            [
                {
                    "file": r.source.name,
                    "status": r.status,
                    "rows": r.rows,
                    "replaced": r.rows_replaced,
                    "impressions": r.impressions,
                    "errors": len(r.errors),
                }
                for r in reports
            ]
        )
        stored = stored_ab_totals(warehouse.database)
        rejected = [r for r in reports if not r.ok]
        return MaterializeResult(
            metadata={
                "files": table_markdown(summary) if len(summary) else MetadataValue.md("*(inbox empty)*"),
                "rejected_files": len(rejected),
                "rejections": MetadataValue.md(
                    "\n\n".join(f"**{r.source.name}**\n```\n" + "\n".join(r.errors[:10]) + "\n```" for r in rejected)
                    or "none"
                ),
                "rows_stored": int(stored[0]),
                "impressions_stored": int(stored[1]),
            }
        )

    return ab_results


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
    # human_manipulation_check: the report's Pretest section reads its tables, so a run (or
    # align-backfill) that materializes both builds the report after the check
    deps=["ab_results", "videos", "scenes", "manipulation_check", "human_manipulation_check"],
    group_name="experiments",
    automation_condition=AutomationCondition.eager(),
    kinds={"python", "html", "duckdb"},
)
def analysis_report(
    context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
) -> MaterializeResult:
    """Lift, heterogeneity by industry, timing, dose-response and guardrails; HTML + DuckDB tables."""
    from analysis.report import build_report  # statsmodels and scipy: load only when a report is built

    report = build_report(warehouse.database, platform.layout.reports_dir)
    return MaterializeResult(
        metadata={
            "headline": MetadataValue.md(report.headline_markdown),
            "report": MetadataValue.path(str(report.html_path)),
            "experiments": MetadataValue.text(", ".join(report.experiments) or "(none)"),
            "notes": MetadataValue.md("\n".join(f"- {n}" for n in report.notes) or "none"),
        }
    )
