"""The ``attention_maps`` stage, and the attention measure the manipulation check re-uses."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from align_core.components import ScorerChoice
from align_core.inputs.catalog import load_catalog
from align_core.io.layout import DataLayout
from align_core.perception.attention import (
    AttentionConfig,
    AttentionMaps,
    PatchScorer,
    attention_map,
    compute_attention_maps,
    save_attention_maps,
)

__all__ = [
    "AttentionMeasure",
    "AttentionSettings",
    "run_attention",
]


@dataclass(frozen=True)
class AttentionMeasure:
    """A scorer with the per-frame procedure: what ``attention_maps`` computes on each keyframe and
    what the manipulation check computes on each edited frame, so both measure the same thing."""

    scorer: PatchScorer
    procedure: AttentionConfig

    @classmethod
    def from_choice(cls, choice: ScorerChoice, device: str = "cpu") -> AttentionMeasure:
        """``choice`` must be resolved (its scorer named)."""
        return cls(choice.build(device=device), AttentionConfig(max_long_side=choice.max_long_side))

    @property
    def name(self) -> str:
        return f"attention_map[{self.scorer.scorer_id}]"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return attention_map(frame, self.scorer, self.procedure)


#: Keyframe maps are stored at half the analysis size per side (see ``save_attention_maps``).
STORAGE_SCALE = 0.5


class AttentionSettings(BaseModel):
    """The video driver's knobs (the scorer and per-frame procedure come from the scorer choice)."""

    keyframe_stride: int = Field(default=6, description="score every k-th frame of a scene (and each scene's first)")


@dataclass
class AttentionResult:
    maps: AttentionMaps
    path: Path
    seconds: float


def run_attention(
    layout: DataLayout, video_id: str, measure: AttentionMeasure, settings: AttentionSettings
) -> AttentionResult:
    """A_t for every frame of one video: keyframes scored, carried within scenes."""
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    procedure = dataclasses.replace(measure.procedure, keyframe_stride=settings.keyframe_stride)
    started = time.perf_counter()
    # keyframes kept in their stored form as they are scored (memory flat in the video's length)
    maps = compute_attention_maps(
        catalog.probe.path, catalog.scene_start_frames, measure.scorer, procedure, storage_scale=STORAGE_SCALE
    )
    seconds = time.perf_counter() - started
    path = save_attention_maps(layout.artifact("attention_maps", "maps", video_id), maps, storage_scale=1.0)
    return AttentionResult(maps, path, seconds)
