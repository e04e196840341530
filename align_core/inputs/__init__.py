"""What a lab provides, read and validated: video files, the two research CSVs, keywords,
product annotations, and the per-video catalog (scenes mapped to frames). Every input CSV is
read through :mod:`align_core.inputs.csv_rows` (cells as text, one row-problem type).

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
            "parse_annotation_row",
            "read_annotations",
            "resolve_annotations",
            "write_annotations",
        ),
        "annotation_file": (
            "AnnotationFile",
            "AnnotationFileError",
            "AnnotationRecord",
            "SceneEdit",
            "StaleSceneError",
            "apply_scene_edits",
            "read_annotation_file",
            "replace_video_rows",
        ),
        "csv_rows": (
            "COLUMN_ALIASES",
            "CsvValidationError",
            "RowCells",
            "RowProblem",
            "canonical_columns",
            "parse_number",
            "read_text_table",
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
            "KeywordTable",
            "csv_problems",
            "describe_csv_problems",
            "format_csv_problems",
            "read_alignment_scores",
            "read_keywords",
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
