"""Dagster resources: the platform settings (data directory, profile) and the DuckDB warehouse.

Both default from the environment (``ALIGN_DATA_DIR``, ``ALIGN_PROFILE``), so the demo, the
UI and the tests point at the same files by setting one variable.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from align_core.layout import DataLayout
from align_core.settings import PROFILE_DEFAULTS, ProfileDefaults, data_dir_from_env, profile_from_env


class PlatformResource(ConfigurableResource):
    """Where the data lives and which profile (demo/research) picks each stage's implementation."""

    data_dir: str = Field(default_factory=lambda: str(data_dir_from_env()), description="Root of inputs and outputs.")
    profile: str = Field(default_factory=profile_from_env, description="'demo' (CPU, tiny models) or 'research' (GPU).")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir))

    @property
    def defaults(self) -> ProfileDefaults:
        if self.profile not in PROFILE_DEFAULTS:
            raise ValueError(f"profile {self.profile!r} is not one of {sorted(PROFILE_DEFAULTS)}")
        return PROFILE_DEFAULTS[self.profile]


def default_resources(data_dir: str | Path | None = None, profile: str | None = None) -> dict[str, object]:
    """The resource set every entry point uses (Definitions, the demo runner, tests)."""
    platform = PlatformResource(
        data_dir=str(Path(data_dir).resolve()) if data_dir is not None else str(data_dir_from_env()),
        profile=profile or profile_from_env(),
    )
    return {
        "platform": platform,
        "warehouse": DuckDBResource(database=str(platform.layout.warehouse_path)),
    }
