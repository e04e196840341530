"""What a lab provides, read and validated: video files, the two research CSVs, keywords,
product annotations, and the per-video catalog (scenes mapped to frames).

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "annotations": (
            "AnnotationError",
            "AnnotationRow",
            "AnnotationTable",
            "FrameAnnotation",
            "annotation_masks_dir",
            "annotations_digest",
            "annotations_path",
            "has_annotations",
            "mask_inputs",
            "read_annotations",
            "resolve_annotations",
            "write_annotations",
        ),
        "catalog": (
            "SCENE_COLUMNS",
            "VideoCatalog",
            "build_catalog",
            "load_catalog",
            "save_catalog",
        ),
        "ids": (
            "InvalidVideoIdError",
            "SCIENTIFIC_ID",
            "VIDEO_ID_PATTERN",
            "is_valid_video_id",
            "validate_video_id",
            "video_id_from_filename",
        ),
        "keywords": (
            "KeywordVerdict",
            "screen_keyword",
        ),
        "research_csvs": (
            "ALIGNMENT_COLUMNS",
            "AlignmentScores",
            "CsvValidationError",
            "KeywordTable",
            "RowProblem",
            "csv_problems",
            "format_csv_problems",
            "read_alignment_scores",
            "read_keywords",
            "read_text_table",
        ),
        "scenes": (
            "SceneIssue",
            "SceneMapping",
            "detect_scenes",
            "map_scenes_to_frames",
        ),
        "video_import": (
            "import_videos",
            "video_ids_in_inbox",
            "videos_in_folder",
        ),
    },
)
