"""``make demo``: build the demo corpus and materialize the whole asset graph over every partition.

The graph runs through :mod:`align_assets.runner` into the persistent instance under
``<data>/dagster_home``, so the UI (``make ui``) shows every run afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from align_assets.runner import failure_messages, materialize_everything, prepare_instance  # noqa: F401  (re-exported)
from align_core.layout import DataLayout


def build_corpus(layout: DataLayout, n_videos: int, seed: int, shared_data: Path | None, include_real: bool) -> list[str]:
    from align_core.registry import video_ids_in_inbox
    from align_demo.corpus import generate_demo_corpus

    keywords_source = shared_data / "keywords.csv" if shared_data and (shared_data / "keywords.csv").exists() else None
    generate_demo_corpus(
        layout,
        n_videos=n_videos,
        seed=seed,
        keywords_source=keywords_source,
        include_real_clips=include_real and shared_data is not None,
        real_clips_dir=shared_data / "videos" if shared_data else None,
    )
    ids, skipped = video_ids_in_inbox(layout)
    for message in skipped:
        print(f"  ignored: {message}")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("ALIGN_DATA_DIR", "data"))
    parser.add_argument("--videos", type=int, default=6, help="number of procedurally rendered demo ads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared-data", default=None, help="path to shared/data (default: ../shared/data)")
    parser.add_argument("--no-real-clips", action="store_true", help="leave out the real CC BY clips")
    parser.add_argument("--ui-only", action="store_true", help="only prepare the instance for `dagster dev`")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    layout = DataLayout(Path(args.data_dir)).ensure()
    os.environ["ALIGN_DATA_DIR"] = str(layout.root)
    os.environ.setdefault("ALIGN_PROFILE", "demo")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_instance(layout.dagster_home)
    if args.ui_only:
        return 0
    repo_root = Path(__file__).resolve().parents[1]
    shared = Path(args.shared_data) if args.shared_data else repo_root.parent / "shared" / "data"
    shared_data = shared.resolve() if shared.is_dir() else None
    if shared_data is None:
        print(f"note: {shared} not found; the demo corpus samples no real keywords and adds no real clips")

    print(f"Building the demo corpus in {layout.raw_dir} ...")
    ids = build_corpus(layout, args.videos, args.seed, shared_data, include_real=not args.no_real_clips)
    print(f"  {len(ids)} videos: {', '.join(ids)}")
    failures = materialize_everything(ids)

    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"Done in {elapsed:.0f} s (peak memory {peak_mb:.0f} MB).")
    print(f"  DuckDB warehouse : {layout.warehouse_path}")
    print(f"  artifacts        : {layout.artifacts_dir}")
    variants_dir = layout.artifacts_dir / "variant_videos"
    if variants_dir.exists():
        print(f"  variant videos   : {variants_dir}/<video_id>/*.mp4")
    reports = layout.reports_dir
    if reports.exists():
        print(f"  analysis report  : {reports}/report.html")
    print("  query it         : .venv/bin/python -c \"import duckdb; print(duckdb.connect("
          f"'{layout.warehouse_path}', read_only=True).sql('SELECT * FROM videos'))\"")
    print(f"  open the UI      : make ui   (DAGSTER_HOME={layout.dagster_home}, http://127.0.0.1:3000)")
    if failures:
        print("\nSome partitions failed (the others materialized):")
        for key, messages in failures.items():
            for message in messages:
                print(f"  {key}: {message}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
