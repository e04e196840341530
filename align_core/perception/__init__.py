"""Where viewers look and where the product is: attention maps A_t, product masks M_t,
protected regions, and the control tensors C_t = [M_t, S_t] with the alignment they define.

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "annotated_masks": (
            "AnnotatedSegmenter",
            "AnnotatedSettings",
            "CHECK_DESCRIPTIONS",
            "ClipSegWithAnnotations",
            "check_annotated_masks",
            "save_mask_diagnostics",
            "segment_annotated_frame",
        ),
        "control": (
            "ATTENTION_MAX_ERROR",
            "ControlTensors",
            "alignment_tables",
            "control_from_maps",
            "given_vs_computed_correlation",
            "load_control_tensors",
            "save_control_tensors",
            "scene_alignment",
        ),
        "masks": (
            "DEFAULT_THRESHOLD",
            "KeywordMasks",
            "KeywordSegmenter",
            "ProvidedMaskSegmenter",
            "SEGMENTERS",
            "load_keyword_masks",
            "make_segmenter",
            "resolve_mask_source",
            "save_keyword_masks",
            "segment_video",
        ),
        "protect": (
            "FACE_DETECTOR_STATUS",
            "ProtectConfig",
            "ProtectedRegions",
            "TextDetection",
            "TextReader",
            "USER_CSV_COLUMNS",
            "UserRegions",
            "carry_text_boxes",
            "covering_units",
            "detect_protected_regions",
            "detection_keyframes",
            "load_protected_regions",
            "read_user_regions",
        ),
    },
)
