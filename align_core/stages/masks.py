"""The ``keyword_masks`` stage: M_t from the chosen segmenter, or empty masks with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from align_core.catalog import load_catalog
from align_core.components import SegmenterChoice
from align_core.keywords import KeywordVerdict
from align_core.layout import DataLayout
from align_core.masks import SEGMENTERS, KeywordMasks, save_keyword_masks, segment_video


@dataclass
class MasksResult:
    result: KeywordMasks
    keyword: KeywordVerdict
    path: Path


def run_masks(layout: DataLayout, video_id: str, choice: SegmenterChoice, device: str = "cpu") -> MasksResult:
    """Segment the video's keyword; a screened keyword or a missing provided mask file gives empty masks."""
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    verdict = catalog.keyword
    skipped = None if verdict.segmentable else f"keyword screened ({verdict.category}): {verdict.reason}"
    segmenter = None
    if skipped is None and choice.name == "provided":
        mask_file = layout.provided_mask_path(video_id)
        if mask_file.exists():
            segmenter = SEGMENTERS.build("provided", mask_path=mask_file)
        else:
            skipped = f"no provided mask file at {mask_file} (the demo profile segments with provided masks; use clipseg)"
    elif skipped is None:
        segmenter = SEGMENTERS.build(choice.name, model=choice.clipseg_model, device=device)
    result = segment_video(
        catalog.probe.path, verdict.keyword, segmenter, threshold=choice.threshold,
        batch_size=choice.batch_size, screened_reason=skipped, probe=catalog.probe,
    )
    path = save_keyword_masks(layout.artifact("keyword_masks", "masks", video_id), result)
    return MasksResult(result, verdict, path)
