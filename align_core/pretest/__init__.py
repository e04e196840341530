"""Human attention pretest: a served moving-window study built from an experiment's variants.

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
    },
)
