"""The ``control_tensors`` stage: C_t = [M_t, A_t M_t], alignment a_t per frame and scene; its checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from align_core.inputs.catalog import VideoCatalog, load_catalog
from align_core.io.atomic import atomic_path
from align_core.io.layout import DataLayout
from align_core.io.video_io import read_frame
from align_core.io.visuals import curves_plot, overlay, save_png, tile
from align_core.perception.attention import load_attention_maps
from align_core.perception.control import (
    ControlTensors,
    alignment_tables,
    control_from_maps,
    given_vs_computed_correlation,
    save_control_tensors,
)
from align_core.perception.masks import KeywordMasks, load_keyword_masks
from align_core.stages import CheckOutcome

__all__ = [
    "ORIGINAL_CONTROL_BYTES",
    "control_checks",
    "run_control",
]

ORIGINAL_CONTROL_BYTES = 10 * 1024 * 1024  # the original code's float32 tensors, ~10 MB per video


@dataclass
class ControlResult:
    catalog: VideoCatalog
    control: ControlTensors
    masks: KeywordMasks
    attention_scorer_id: str
    frames: pd.DataFrame
    scenes: pd.DataFrame
    given_vs_computed_r: float | None
    paths: dict[str, Path]


def run_control(layout: DataLayout, video_id: str, *, plots: bool = True) -> ControlResult:
    """Combine the video's attention maps and masks; write the tensors, the alignment tables and (optionally) plots."""
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    attention = load_attention_maps(layout.artifact("attention_maps", "maps", video_id))
    masks = load_keyword_masks(layout.artifact("keyword_masks", "masks", video_id))
    control = control_from_maps(attention, masks.masks)  # streamed: one frame decoded at a time
    paths = {"control": save_control_tensors(layout.artifact("control_tensors", "control", video_id), control)}
    frames_df, scenes_df = alignment_tables(video_id, control, catalog.probe.fps, catalog.scenes)
    for table, role in ((frames_df, "frames"), (scenes_df, "scenes")):
        paths[role] = layout.artifact("control_tensors", role, video_id)
        with atomic_path(paths[role]) as tmp:
            table.to_parquet(tmp, index=False)
    if plots:
        paths["plot"] = curves_plot(
            layout.artifact("control_tensors", "plot", video_id),
            frames_df["time_s"].to_numpy(),
            {
                "alignment a_t": frames_df["alignment"].to_numpy(),
                "mask coverage": frames_df["mask_coverage"].to_numpy(),
            },
            title=f"{video_id}: product share of attention over time",
            ylabel="share",
            boundaries=[row.start_frame / catalog.probe.fps for row in catalog.scenes.itertuples()][1:],
        )
        paths["overlays"] = save_png(
            layout.artifact("control_tensors", "overlays", video_id), overlay_strip(catalog, control)
        )
    return ControlResult(
        catalog,
        control,
        masks,
        attention.scorer_id,
        frames_df,
        scenes_df,
        given_vs_computed_correlation(scenes_df),
        paths,
    )


def overlay_strip(catalog: VideoCatalog, control: ControlTensors, count: int = 4) -> np.ndarray:
    """Overlays at the first frame of up to ``count`` scenes (the mid frame if the product is absent there)."""
    picks = []
    coverage = control.coverage_per_frame()
    for start, end in catalog.scene_ranges[:count]:
        with_product = [t for t in range(start, end) if coverage[t] > 0]
        picks.append(with_product[len(with_product) // 2] if with_product else (start + end) // 2)
    images = [overlay(read_frame(catalog.probe.path, t), control.attention[t], control.masks[t]) for t in picks]
    alignment = control.alignment_per_frame()
    labels = [f"frame {t}  a={alignment[t]:.2f}" for t in picks]
    return tile(images, labels)


def control_checks(result: ControlResult) -> list[CheckOutcome]:
    """Values in range, one tensor per frame at the video's size, plausible mask coverage."""
    control, probe = result.control, result.catalog.probe
    alignment = result.frames["alignment"].to_numpy()
    low, high = control.attention_range()  # S_t = A_t M_t <= A_t, so A in [0, 1] bounds S too
    in_range = bool(
        low >= 0 and high <= 1 and np.isfinite(alignment).all() and alignment.min() >= 0 and alignment.max() <= 1
    )
    shape_ok = tuple(control.masks.shape) == (probe.frame_count, probe.height, probe.width)
    coverage = result.frames["mask_coverage"].to_numpy()
    if result.masks.skipped_reason:
        plausible, detail = True, f"not segmented: {result.masks.skipped_reason}"
    else:
        plausible = bool((coverage > 0).any() and coverage.max() < 0.6)
        detail = f"product in {(coverage > 0).mean():.0%} of frames, max coverage {coverage.max():.2f}"
    return [
        CheckOutcome("values_in_range", in_range, {"attention_max": high, "alignment_max": float(alignment.max())}),
        CheckOutcome(
            "frames_match_video",
            shape_ok,
            {
                "tensor_shape": str(tuple(control.masks.shape)),
                "video": f"{probe.frame_count} x {probe.height} x {probe.width}",
            },
        ),
        CheckOutcome("mask_coverage_plausible", plausible, {"detail": detail}, warn_only=True),
    ]
