"""Dagster resources: the platform (data directory, profile), the warehouse, and the three models.

Every resource defaults from the environment (``ALIGN_DATA_DIR``, ``ALIGN_PROFILE``), so the
demo, the UI and the tests point at the same files by setting one variable. The models a stage
uses are resources, the way Dagster passes models and compute to assets: ``scorer`` (the
attention scorer; the attention maps AND the manipulation check use this one), ``segmenter``
and ``editor``. Each is the ``align_core.components`` choice of that kind made configurable, so
it is defined once; an unset name means "the profile's".
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from align_core.components import EditorChoice, ScorerChoice, SegmenterChoice
from align_core.io.layout import DataLayout
from align_core.settings import PROFILE_DEFAULTS, ProfileDefaults, data_dir_from_env, profile_from_env
from align_core.stages.attention import AttentionMeasure

__all__ = [
    "EditorResource",
    "PlatformResource",
    "ScorerResource",
    "SegmenterResource",
    "default_resources",
]


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


class ScorerResource(ConfigurableResource, ScorerChoice):
    """The attention scorer and per-frame procedure: makes the attention maps and measures every variant."""

    def measure(self, platform: PlatformResource) -> AttentionMeasure:
        defaults = platform.defaults
        return AttentionMeasure.from_choice(self.resolved(defaults.patch_scorer), device=defaults.device)


class SegmenterResource(ConfigurableResource, SegmenterChoice):
    """The keyword segmenter that makes the product masks."""

    def choice(self, platform: PlatformResource) -> SegmenterChoice:
        return self.resolved(platform.defaults.segmenter)


class EditorResource(ConfigurableResource, EditorChoice):
    """The keyframe editor that renders the variants (and, for ControlNet, its sampling knobs)."""

    def choice(self, platform: PlatformResource) -> EditorChoice:
        return self.resolved(platform.defaults.editor)


def default_resources(
    data_dir: str | Path | None = None,
    profile: str | None = None,
    *,
    scorer: ScorerResource | None = None,
    segmenter: SegmenterResource | None = None,
    editor: EditorResource | None = None,
) -> dict[str, object]:
    """The resource set every entry point uses (Definitions, the demo runner, tests)."""
    platform = PlatformResource(
        data_dir=str(Path(data_dir).resolve()) if data_dir is not None else str(data_dir_from_env()),
        profile=profile or profile_from_env(),
    )
    return {
        "platform": platform,
        "warehouse": DuckDBResource(database=str(platform.layout.warehouse_path)),
        "scorer": scorer or ScorerResource(),
        "segmenter": segmenter or SegmenterResource(),
        "editor": editor or EditorResource(),
    }
