"""The one ``Definitions`` object: every asset, check, sensor, schedule, job and resource.

:func:`build_definitions` shapes the graph from the resources: ``variant_videos`` depends on
``controlnet_checkpoint`` only when the configured editor reads it, and only the ``demo``
profile adds the demo's assets (the simulated A/B export, ``align_demo.assets``) upstream of
``ab_results``. ``defs`` is that graph for the environment's profile (``ALIGN_PROFILE``).
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from align_assets import schedules, sensors
from align_assets.assets import attention, catalog, checkpoint, control, experiments, masks, protect, variants
from align_assets.automation import per_video_automation, without_per_video_conditions
from align_assets.resources import default_resources

__all__ = [
    "all_asset_checks",
    "all_assets",
    "build_definitions",
    "defs",
    "stage_modules",
]

stage_modules = [catalog, attention, masks, control, checkpoint, protect, variants, experiments]

#: Evaluates the assets' automation conditions (eager: a new or updated upstream partition is
#: carried downstream) whenever the daemon runs, e.g. under `dagster dev`.
automation_sensor = AutomationConditionSensorDefinition(
    "automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
)


def build_definitions(resources: dict[str, object] | None = None) -> Definitions:
    """Every definition for ``resources`` (default: :func:`default_resources` from the environment).

    Per-video assets (and the tables they feed) are carried by the event-driven
    ``per_video_automation`` sensor, not by a scan of every partition (see align_assets.automation).
    """
    resources = resources or default_resources()
    platform, editor = resources["platform"], resources["editor"]
    assets = [
        *load_assets_from_modules(stage_modules),
        variants.variant_videos_asset(needs_checkpoint=editor.choice(platform).needs_checkpoint),
    ]
    checks: list = list(load_asset_checks_from_modules(stage_modules))  # e.g. the annotated masks' partitioned checks
    ab_deps: tuple[str, ...] = ()
    if platform.profile == "demo":
        from align_demo.assets import AB_RESULTS_DEPS, demo_assets, demo_checks

        assets += demo_assets
        checks += demo_checks
        ab_deps = AB_RESULTS_DEPS
    assets.append(experiments.ab_results_asset(extra_deps=ab_deps))
    return Definitions(
        assets=without_per_video_conditions(assets),
        asset_checks=checks,
        sensors=[sensors.new_video_sensor, experiments.ab_export_sensor, automation_sensor, per_video_automation],
        schedules=[schedules.nightly_catch_up, schedules.daily_report],
        jobs=[
            schedules.per_video_pipeline,
            schedules.warehouse_refresh,
            schedules.report_refresh,
            schedules.train_controlnet_job,
        ],
        resources=resources,
    )


defs = build_definitions()
all_assets = list(defs.assets)
#: Checks defined apart from their asset (the annotated masks' partitioned checks, the demo's planted-effects check).
all_asset_checks = list(defs.asset_checks)
