"""The ``protected_regions`` stage: text overlays (PP-OCRv4) and the user's regions no variant may edit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from align_core.inputs.catalog import load_catalog
from align_core.io.layout import DataLayout
from align_core.perception.protect import (
    ProtectConfig,
    ProtectedRegions,
    UserRegions,
    detect_protected_regions,
    read_user_regions,
)

__all__ = [
    "ProtectSettings",
    "run_protect",
]


class ProtectSettings(BaseModel):
    """How text is detected (the user's regions come from ``raw/protect.csv`` and mask PNGs)."""

    detect_text: bool = Field(default=True, description="detect text overlays with PP-OCRv4 (rapidocr-onnxruntime)")
    analysis_max_side: int = Field(
        default=960, description="OCR runs on frames scaled so the longer side is at most this"
    )
    stride_s: float = Field(
        default=0.5, description="detect every this many seconds within a scene (plus scene starts/ends)"
    )
    margin: float = Field(default=0.01, description="box dilation, fraction of the frame's shorter side")
    text_min_score: float = Field(default=0.5, description="recognition confidence below which a detection is dropped")
    threads: int = Field(default=1, description="onnxruntime threads")

    def config(self) -> ProtectConfig:
        return ProtectConfig(
            detect_text=self.detect_text,
            analysis_max_side=self.analysis_max_side,
            stride_s=self.stride_s,
            margin=self.margin,
            text_min_score=self.text_min_score,
            threads=self.threads,
        )


@dataclass
class ProtectResult:
    regions: ProtectedRegions
    user: UserRegions
    out_dir: Path
    video_path: Path
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def run_protect(layout: DataLayout, video_id: str, settings: ProtectSettings) -> ProtectResult:
    """Detect and store the protected regions of one video (text per keyframe, carried; user regions)."""
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    probe = catalog.probe
    scenes = {
        int(n): (int(a), int(b))
        for n, a, b in zip(
            catalog.scenes["scene_number"], catalog.scenes["start_frame"], catalog.scenes["end_frame"], strict=True
        )
    }
    started = time.perf_counter()
    user = read_user_regions(
        video_id,
        layout.protect_csv,
        layout.protect_masks_dir(video_id),
        probe.frame_count,
        probe.height,
        probe.width,
        scenes,
    )
    regions = detect_protected_regions(video_id, probe.path, catalog.scene_ranges, user, settings.config())
    out_dir = layout.artifact_dir("protected_regions", video_id)
    paths = regions.save(out_dir)
    return ProtectResult(regions, user, out_dir, Path(probe.path), paths, time.perf_counter() - started)
