"""Experiments: an experiment's config (its arms), which variants are eligible, the upload
manifest, the A/B results exports with their column mappings, and the ``experiments`` table's
one writer (:func:`record_experiment`).

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ab_mapping": (
            "AD_NAME_FORMAT",
            "AdNameError",
            "AdNameTemplate",
            "ExportMapping",
            "decode_ad_name",
            "encode_ad_name",
            "load_mapping",
            "shipped_mappings",
        ),
        "ab_results": (
            "AMOUNT_COLUMNS",
            "COUNT_COLUMNS",
            "ExportRules",
            "IngestReport",
            "KEY_COLUMNS",
            "NULLABLE_COLUMNS",
            "REQUIRED_COLUMNS",
            "SUMSQ_COLUMN",
            "VIEW_COLUMNS",
            "ensure_tables",
            "inbox_mapping",
            "ingest_export",
            "known_videos_from_warehouse",
            "register_experiment",
            "registered_experiment_ids",
            "scan_inbox",
            "stored_ab_totals",
        ),
        "config": (
            "ExperimentConfig",
            "ensure_registry_table",
            "load_experiment_config",
            "register_experiment_config",
            "registered_configs",
            "registered_variants",
            "variants_for",
        ),
        "export_text": (
            "ExportDecodeError",
            "decode_export_bytes",
            "parse_count",
            "sniff_delimiter",
        ),
        "experiments_table": (
            "EXPERIMENTS_DDL",
            "EXPERIMENT_FILE_SUFFIX",
            "REGISTRY_TABLES",
            "experiment_file",
            "record_experiment",
            "save_experiment_file",
        ),
        "registry_files": (
            "experiment_files",
            "restore_registry",
            "save_all_experiment_files",
        ),
        "eligibility": (
            "eligibility_table",
            "variants_select_sql",
        ),
        "upload_manifest": ("build_upload_manifest",),
    },
)
