"""``make demo``: build the demo corpus and materialize the whole asset graph over every partition.

Runs go into a persistent Dagster instance under ``<data>/dagster_home`` so that the UI
(``make ui``) shows every run, materialization and check afterwards. The graph is executed in
waves: all partitioned assets whose upstream is done (one run per video, so a bad video fails
alone), then the unpartitioned assets that became ready (the checkpoint, warehouse tables,
the report), and so on until nothing is left. This is the ``align-demo`` CLI; the demo profile's
graph is :mod:`align_demo.definitions`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from align_assets.runner import (  # the runner's names the demo's tests use through this module
    failure_messages,
    materialize_everything,
    prepare_instance,
    quiet_dagster_warnings,
    report_inputs,
    run_command,
)
from align_core.io.layout import DataLayout
from align_core.settings import add_data_dir_argument
from align_demo.provenance import foreign_inputs

__all__ = [
    "build_corpus",
    "failure_messages",
    "main",
    "materialize_everything",
    "prepare_instance",
    "quiet_dagster_warnings",
    "report_inputs",
    "run_command",
]


def build_corpus(
    layout: DataLayout,
    n_videos: int,
    seed: int,
    shared_data: Path | None,
    include_real: bool,
    real_size_ads: int = 0,
    real_size_seconds: float = 20.0,
) -> list[str]:
    """Write the demo corpus; ``real_size_ads`` adds realistic-size (1080x1920, 30 fps) ads of that length."""
    from align_core.inputs.video_import import video_ids_in_inbox
    from align_demo.corpus import generate_demo_corpus

    keywords_source = shared_data / "keywords.csv" if shared_data and (shared_data / "keywords.csv").exists() else None
    if n_videos < 1:
        raise ValueError(f"--videos {n_videos}: the demo needs at least 1 video")
    # The screened-keyword and detected-scene cases need videos of their own; a small demo keeps
    # every video an editable product ad instead of failing.
    screened = 1 if n_videos >= 3 else 0
    corpus = generate_demo_corpus(
        layout,
        n_videos=n_videos,
        n_empty_keywords=screened,
        n_cta_keywords=screened,
        videos_without_scene_rows=1 if n_videos >= 2 else 0,
        seed=seed,
        keywords_source=keywords_source,
        include_real_clips=include_real and shared_data is not None,
        real_clips_dir=shared_data / "videos" if shared_data else None,
        real_size_ads=real_size_ads,
        real_size_seconds=real_size_seconds,
    )
    ids, _ = video_ids_in_inbox(layout)  # files it leaves out are listed by report_inputs
    # The realistic-size ads first: the longest videos start first, so the video workers finish together.
    first = [v.video_id for v in corpus.real_size_videos if v.video_id in ids]
    return first + [i for i in ids if i not in first]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument(
        "--videos",
        type=int,
        default=8,
        help="number of procedurally rendered demo ads (8: six edited, two in each of three industries)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared-data", default=None, help="path to shared/data (default: ../shared/data)")
    parser.add_argument("--no-real-clips", action="store_true", help="leave out the real CC BY clips")
    parser.add_argument(
        "--no-real-size-ad",
        action="store_true",
        help="leave out the realistic-size ad (1080x1920, 30 fps; the slowest video of the demo)",
    )
    parser.add_argument(
        "--real-size-seconds", type=float, default=20.0, help="length of the realistic-size ad in seconds (default 20)"
    )
    parser.add_argument("--ui-only", action="store_true", help="only prepare the instance for `dagster dev`")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="videos materialized at once, each in its own worker process (default: 2, or 1 on one core)",
    )
    return parser


def _refuse_foreign_inputs(layout: DataLayout, foreign: list[str]) -> int:
    """Say why the demo stops on a directory holding the user's own inputs (exit status 2)."""
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    print(
        f"align-demo: {layout.root} holds inputs the demo did not create ({shown}); the demo would "
        "overwrite them, so it stops here and changes nothing. Give the demo its own directory "
        "(--data-dir data-demo), or run your own data with align-backfill --data-dir "
        f"{layout.root}.",
        file=sys.stderr,
    )
    return 2


def _shared_data(argument: str | None) -> Path | None:
    """The shared data directory (default ``../shared/data`` beside the repository), or None when absent."""
    repo_root = Path(__file__).resolve().parents[1]
    shared = Path(argument) if argument else repo_root.parent / "shared" / "data"
    if shared.is_dir():
        return shared.resolve()
    print(f"note: {shared} not found; the demo corpus samples no real keywords and adds no real clips")
    return None


def _build_and_record_corpus(layout: DataLayout, args: argparse.Namespace) -> list[str] | None:
    """Write the demo corpus and record its files; None (after saying why) when it cannot be built."""
    shared_data = _shared_data(args.shared_data)
    extra = "" if args.no_real_size_ad else f" (with a {args.real_size_seconds:g} s 1080x1920 realistic-size ad)"
    print(f"Building the demo corpus in {layout.raw_dir}{extra} ...")
    try:
        ids = build_corpus(
            layout,
            args.videos,
            args.seed,
            shared_data,
            include_real=not args.no_real_clips,
            real_size_ads=0 if args.no_real_size_ad else 1,
            real_size_seconds=args.real_size_seconds,
        )
    except ValueError as exc:
        print(f"align-demo: cannot build the demo corpus: {exc}", file=sys.stderr)
        return None
    print(f"  {len(ids)} videos: {', '.join(ids)}")
    return ids


def _print_summary(layout: DataLayout, started: float, failures: dict[str, list[str]]) -> int:
    """Where everything is, and the failed partitions (exit status 1 when any failed)."""
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
    print(
        '  query it         : .venv/bin/python -c "import duckdb; print(duckdb.connect('
        f"'{layout.warehouse_path}', read_only=True).sql('SELECT * FROM videos'))\""
    )
    print(f"  open the UI      : make ui   (DAGSTER_HOME={layout.dagster_home}, http://127.0.0.1:3000)")
    if failures:
        print("\nSome partitions failed (the others materialized):")
        for key, messages in failures.items():
            for message in messages:
                print(f"  {key}: " + message.replace("\n", "\n    "))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    layout = DataLayout(Path(args.data_dir))
    foreign = foreign_inputs(layout)
    if foreign and not args.ui_only:
        return _refuse_foreign_inputs(layout, foreign)
    layout = layout.ensure()
    os.environ["ALIGN_DATA_DIR"] = str(layout.root)
    os.environ.setdefault("ALIGN_PROFILE", "demo")  # the demo profile's code location: align_demo.definitions
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_instance(layout.dagster_home)
    if args.ui_only:
        return 0
    ids = _build_and_record_corpus(layout, args)
    if ids is None:
        return 2
    failures = run_command("align-demo", layout, ids, workers=args.workers)
    return _print_summary(layout, started, failures)


if __name__ == "__main__":
    sys.exit(main())
