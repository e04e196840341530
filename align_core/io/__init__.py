"""Input/output plumbing: video decode/encode, per-frame stores, compact arrays, atomic writes,
the data-directory layout, the DuckDB warehouse and the pictures stages attach as metadata.

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "arrays": (
            "load_mask_stack",
            "pack_masks",
            "save_mask_stack",
            "save_npz_atomic",
            "unpack_masks",
        ),
        "atomic": (
            "atomic_directory",
            "atomic_path",
            "atomic_write_bytes",
            "atomic_write_text",
            "current_umask",
            "process_alive",
            "reclaim_temporaries",
        ),
        "frames": (
            "FrameStore",
            "LazyFrames",
            "MaskFrames",
        ),
        "hashing": (
            "array_sha256",
            "bytes_sha256",
            "file_sha256",
            "files_sha256",
            "weights_head_tail_fingerprint",
        ),
        "layout": (
            "ARTIFACT_FILES",
            "AmbiguousVideoError",
            "DataLayout",
        ),
        "video_io": (
            "VIDEO_SUFFIXES",
            "VideoError",
            "VideoProbe",
            "VideoWriter",
            "even_size",
            "is_video_file",
            "iter_frames",
            "lockstep_frames",
            "probe_video",
            "read_frame",
            "read_frames",
            "write_video",
        ),
        "visuals": (
            "curves_plot",
            "outline_regions",
            "overlay",
            "save_png",
            "tile",
        ),
        "warehouse": (
            "READER_GRACE_S",
            "WarehouseBusyError",
            "WarehouseCorruptError",
            "collect_parquet_table",
            "read_connection",
            "rebuild_table_from_parquet",
            "replace_rows",
            "replace_table",
            "table_exists",
            "transaction",
            "write_connection",
            "warehouse_lock",
            "write_partition_rows",
        ),
        "warehouse_guard": (
            "REBUILD_COMMAND",
            "check_storage",
            "corrupt_error",
            "is_corruption",
            "is_lock_conflict",
            "lock_holders",
            "lock_message_pid",
            "move_aside",
            "needs_rebuild_error",
            "process_description",
            "rebuild_marker",
            "table_checksums",
        ),
    },
)
