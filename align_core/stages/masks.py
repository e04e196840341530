"""The ``keyword_masks`` stage: M_t from the chosen segmenter, or empty masks with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from align_core.components import SegmenterChoice
from align_core.inputs.catalog import load_catalog
from align_core.inputs.keywords import KeywordVerdict
from align_core.io.layout import DataLayout
from align_core.perception.masks import SEGMENTERS, KeywordMasks, save_keyword_masks, segment_video

__all__ = [
    "run_masks",
]


@dataclass
class MasksResult:
    result: KeywordMasks
    keyword: KeywordVerdict
    path: Path
    mask_source: str = "none"
    #: per-frame diagnostics of annotated masks (None for other sources); the asset checks read them
    diagnostics: pd.DataFrame | None = None


def run_masks(layout: DataLayout, video_id: str, choice: SegmenterChoice, device: str = "cpu") -> MasksResult:
    """Segment the video's keyword with the chosen source (``provided`` falls back to annotations
    in ``raw/annotations.csv``; ``clipseg`` is constrained by them); a screened keyword or no
    usable source gives empty masks with the reason."""
    from align_core.inputs.annotations import has_annotations
    from align_core.perception.annotated_masks import save_mask_diagnostics
    from align_core.perception.masks import resolve_mask_source
    from align_core.perception.reacquire import save_absent_strip

    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    verdict = catalog.keyword
    name, skipped = resolve_mask_source(
        choice.name,
        provided_file=layout.provided_mask_path(video_id),
        annotated=has_annotations(layout, video_id),
    )
    if not verdict.segmentable:
        skipped = f"keyword screened ({verdict.category}): {verdict.reason}"
    segmenter = None
    if skipped is None:
        annotated = {"video_id": video_id, "scene_ranges": catalog.scene_ranges, "layout": layout}
        model = {"model": choice.clipseg_model, "device": device}
        options = {
            "provided": {"mask_path": layout.provided_mask_path(video_id)},
            "annotated": annotated,
            "clipseg": model,
            "clipseg+annotated": {**model, **annotated},
        }[name]
        segmenter = SEGMENTERS.build(name, **options)
    result = segment_video(
        catalog.probe.path,
        verdict.keyword,
        segmenter,
        threshold=choice.threshold,
        batch_size=choice.batch_size,
        screened_reason=skipped,
        probe=catalog.probe,
    )
    path = save_keyword_masks(layout.artifact("keyword_masks", "masks", video_id), result)
    diagnostics = getattr(segmenter, "diagnostics", None)
    save_mask_diagnostics(layout.artifact("keyword_masks", "diagnostics", video_id), diagnostics)
    # frames where an annotated product was not found again, for the user to add a box
    save_absent_strip(
        layout.artifact("keyword_masks", "absent_strip", video_id), getattr(segmenter, "absent_thumbnails", None)
    )
    return MasksResult(result, verdict, path, name if skipped is None else "none", diagnostics)
