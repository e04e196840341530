"""The production ``Definitions``: every asset, check, sensor, schedule, job and resource of the platform.

:func:`build_definitions` shapes the graph from the resources: ``variant_videos`` depends on
``controlnet_checkpoint`` only when the configured editor reads it. It knows nothing of the
demo: the demo profile's code location (``align_demo.definitions``) extends this one with
``Definitions.merge``. Dagster loads whichever the profile names through
:mod:`align_assets.definitions`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from align_assets import schedules, sensors
from align_assets.assets import attention, catalog, checkpoint, control, experiments, masks, pretest, protect, variants
from align_assets.automation import per_video_automation
from align_assets.resources import default_resources

__all__ = [
    "automation_sensor",
    "build_definitions",
    "stage_modules",
]

stage_modules = [catalog, attention, masks, control, checkpoint, protect, variants, experiments, pretest]

#: Evaluates the unpartitioned assets' automation conditions (the checkpoint, the A/B ingest and
#: the report) whenever the daemon runs, e.g. under `dagster dev`. Per-video assets declare none:
#: the ``per_video_automation`` sensor carries them (see align_assets.automation).
automation_sensor = AutomationConditionSensorDefinition(
    "automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
)


def build_definitions(
    resources: dict[str, object] | None = None, *, ab_results_deps: Sequence[str] = ()
) -> Definitions:
    """Every production definition for ``resources`` (default: :func:`default_resources` from the environment).

    ``ab_results_deps`` names assets ``ab_results`` waits for that a code location extending this
    one adds (the demo's simulated export); production ingests whatever lands in the inbox.
    """
    resources = resources or default_resources()
    platform, editor = resources["platform"], resources["editor"]
    assets = [
        *load_assets_from_modules(stage_modules),
        variants.variant_videos_asset(needs_checkpoint=editor.choice(platform).needs_checkpoint),
        experiments.ab_results_asset(extra_deps=ab_results_deps),
    ]
    return Definitions(
        assets=assets,
        asset_checks=list(
            load_asset_checks_from_modules(stage_modules)
        ),  # e.g. the annotated masks' partitioned checks
        sensors=[
            sensors.new_video_sensor,
            experiments.ab_export_sensor,
            pretest.pretest_session_sensor,
            automation_sensor,
            per_video_automation,
        ],
        schedules=[schedules.nightly_catch_up, schedules.daily_report],
        jobs=[
            schedules.per_video_pipeline,
            schedules.warehouse_refresh,
            schedules.report_refresh,
            schedules.train_controlnet_job,
        ],
        resources=resources,
    )
