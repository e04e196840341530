"""The one ``Definitions`` object: every asset, check, sensor, schedule, job and resource."""

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
from align_assets.automation import per_video_automation, without_per_video_conditions
from align_assets.assets import attention, catalog, checkpoint, control, experiments, masks, protect, variants
from align_assets.resources import default_resources

stage_modules = [catalog, attention, masks, control, checkpoint, protect, variants, experiments]

#: Per-video assets (and the tables they feed) are carried by the event-driven
#: ``per_video_automation`` sensor, not by a scan of every partition (see align_assets.automation).
all_assets = without_per_video_conditions(load_assets_from_modules(stage_modules))
#: Checks defined apart from their asset (partitioned ``@asset_check``s, e.g. the annotated masks').
all_asset_checks = load_asset_checks_from_modules(stage_modules)

#: Evaluates the assets' automation conditions (eager: a new or updated upstream partition is
#: carried downstream) whenever the daemon runs, e.g. under `dagster dev`.
automation_sensor = AutomationConditionSensorDefinition(
    "automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
)

defs = Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    sensors=[sensors.new_video_sensor, experiments.ab_export_sensor, automation_sensor, per_video_automation],
    schedules=[schedules.nightly_catch_up, schedules.daily_report],
    jobs=[schedules.per_video_pipeline, schedules.warehouse_refresh, schedules.report_refresh, schedules.train_controlnet_job],
    resources=default_resources(),
)
