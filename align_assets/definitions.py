"""The one ``Definitions`` object: every asset, check, sensor, schedule, job and resource."""

from __future__ import annotations

from dagster import Definitions, load_assets_from_modules

from align_assets import schedules, sensors
from align_assets.assets import attention, catalog, checkpoint, control, experiments, masks, variants
from align_assets.resources import default_resources

stage_modules = [catalog, attention, masks, control, checkpoint, variants, experiments]

all_assets = load_assets_from_modules(stage_modules)

defs = Definitions(
    assets=all_assets,
    sensors=[sensors.new_video_sensor, experiments.ab_export_sensor],
    schedules=[schedules.nightly_catch_up, schedules.daily_report],
    jobs=[schedules.per_video_pipeline, schedules.warehouse_refresh, schedules.report_refresh, schedules.train_controlnet_job],
    resources=default_resources(),
)
