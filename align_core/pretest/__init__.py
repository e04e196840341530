"""Human attention pretest: a served moving-window study, its collected responses and human maps.

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "design": ("canonical_json", "design_hash", "latin_square_lists", "list_balance", "seeded_order"),
        "page": ("render_page",),
        "records": (
            "MAX_SAMPLES",
            "AttentionCheckRecord",
            "CompleteRecord",
            "CursorRecord",
            "PostedRecord",
            "RealismRecord",
            "SessionStart",
        ),
        "server": ("TOKEN_HEADER", "PretestApp", "PretestGuard", "guarded_app"),
        "store": ("CROWD_KEYS", "HEX_ID", "SessionStore", "UnknownSession", "hash_crowd_ids", "session_token"),
        "study": (
            "STUDY_ID",
            "BuiltStudy",
            "StudyError",
            "StudySettings",
            "build_study",
            "eligible_variant_files",
            "load_study",
            "study_dir",
            "write_secret_file",
        ),
        "collect": (
            "PRETEST_TABLES",
            "CollectReport",
            "SessionRecords",
            "collect_pretest",
            "collect_study",
            "load_collected_study",
            "pretest_root",
            "read_session_file",
            "session_files",
            "session_files_fingerprint",
            "study_ids",
        ),
        "human_maps": (
            "HumanMapSettings",
            "VideoGrid",
            "VideoHumanAttention",
            "frame_windows",
            "grid_coverage",
            "human_alignment",
            "human_maps",
            "load_human_maps",
            "sample_counts",
            "save_human_maps",
            "scorer_card",
            "trial_alignment",
            "video_human_attention",
            "window_sigma_px",
        ),
        "stage": (
            "CENTRE_BIAS_SCORER",
            "human_maps_path",
            "study_rows",
            "video_human_stage",
        ),
    },
)
