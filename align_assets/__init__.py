"""The Dagster layer: thin assets over :mod:`align_core.stages`, resources, sensors, schedules,
checks, and the in-process runner behind ``align-backfill`` and ``align-import``.

The code location is :mod:`align_assets.definitions`.
"""

__all__: list[str] = []
