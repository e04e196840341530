"""Corpus scale: automation ticks with 100,000+ video partitions, and warehouse-table rebuilds.

Usage::

    .venv/bin/python -m bench.bench_partition_scale                        # 10,000 and all 107,205 real ids
    .venv/bin/python -m bench.bench_partition_scale --partitions 1000 10000
    .venv/bin/python -m bench.bench_partition_scale --skip-automation --warehouse-videos 1000 10000

Part 1 (automation): the real ``keywords.csv`` ids (``../shared/data/keywords.csv``, 107,205
videos) are registered as dynamic partitions in a fresh on-disk Dagster instance, and one tick
of the ``automation`` sensor is timed with :func:`dagster.evaluate_automation_conditions` (the
same evaluation the daemon runs), with nothing materialized (the worst case: every partition
is missing), then a second tick from the first tick's cursor (the steady state). Registering,
``Definitions`` loading and the tick are each timed; peak RSS is the process's.

Part 2 (warehouse): ``N`` videos' per-frame alignment Parquet files of real size (a 30 s ad
at 30 fps: 900 frame rows) are written, then the ``frame_alignment`` table is rebuilt in full
(:func:`align_core.io.warehouse.rebuild_table_from_parquet` with no previous state, what the
table asset did before) and incrementally (only the files that changed since the last
rebuild). The full rebuild time is extrapolated linearly to 100,000 videos (it is linear in
the rows it reads); the incremental one depends on the number of changed videos, not the
corpus.

Prints tables; results also go to ``bench/results/bench_partition_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
SHARED_KEYWORDS = REPO.parent / "shared" / "data" / "keywords.csv"


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def real_video_ids(path: Path, limit: int | None) -> list[str]:
    """Valid, unique ids from the real keywords.csv (read as text: 19-digit ids are strings)."""
    import pandas as pd

    from align_core.inputs.ids import validate_video_id

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    ids: list[str] = []
    seen: set[str] = set()
    for raw in frame["_id"]:
        try:
            video_id = validate_video_id(raw.strip(), where=str(path))
        except ValueError:
            continue
        if video_id not in seen:
            seen.add(video_id)
            ids.append(video_id)
    return ids[:limit] if limit else ids


def _definitions(before: bool):
    """The platform's Definitions, or (``before``) every asset with its own eager condition as before the change."""
    from dagster import Definitions, load_assets_from_modules, map_asset_specs

    from align_assets.automation import PER_VIDEO_CONDITION, carried_keys
    from align_assets.definitions import defs
    from align_assets.production import stage_modules
    from align_assets.resources import default_resources

    if not before:
        return defs
    assets = load_assets_from_modules(stage_modules)
    carried = carried_keys(defs.assets)  # the tables fed by factory-built assets (variant_videos) too
    assets = map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=PER_VIDEO_CONDITION) if spec.key in carried else spec,
        assets,
    )
    return Definitions(assets=assets, resources=default_resources())


def automation_tick(
    count: int, ids: list[str], ticks: int = 2, before: bool = False, materialized: int = 100
) -> dict[str, Any]:
    """Register ``count`` partitions in a fresh instance and time automation ticks.

    Times the ``automation`` sensor's evaluation (:func:`dagster.evaluate_automation_conditions`)
    and, unless ``before``, the ``per_video_automation`` sensor's tick with nothing new, then
    after ``materialized`` videos' catalogs were recorded (each must request its three children).
    """
    from dagster import AssetKey, AssetMaterialization, DagsterInstance, evaluate_automation_conditions

    from align_assets.automation import evaluate_per_video_automation
    from align_assets.partitions import VIDEO_PARTITIONS_NAME

    defs = _definitions(before)
    row: dict[str, Any] = {"partitions": count, "definitions": "before (eager on every asset)" if before else "now"}
    with tempfile.TemporaryDirectory(prefix="bench_partitions_") as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with DagsterInstance.from_config(home) as instance:
            started = time.perf_counter()
            for start in range(0, count, 10_000):
                instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, ids[start : min(count, start + 10_000)])
            row["register_s"] = time.perf_counter() - started
            cursor = None
            for tick in range(ticks):
                started = time.perf_counter()
                result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
                row[f"tick{tick + 1}_s"] = time.perf_counter() - started
                row[f"tick{tick + 1}_requested"] = int(result.total_requested)
                cursor = result.cursor
            if not before:
                graph = defs.resolve_asset_graph()
                started = time.perf_counter()
                _, video_cursor, counts = evaluate_per_video_automation(instance, graph, None)
                row["per_video_idle_s"] = time.perf_counter() - started
                for video_id in ids[:materialized]:
                    instance.report_runless_asset_event(
                        AssetMaterialization(AssetKey("video_catalog"), partition=video_id)
                    )
                started = time.perf_counter()
                requests, video_cursor, counts = evaluate_per_video_automation(instance, graph, video_cursor)
                row["per_video_events_s"] = time.perf_counter() - started
                row["per_video_events"] = counts["events"]
                row["per_video_requested"] = counts["requested"]
    row["peak_mb"] = maxrss_mb()
    return row


def warehouse_rebuild(videos: int, frames_per_video: int, changed: int) -> dict[str, Any]:
    """Write ``videos`` alignment files, rebuild the table fully, change some, rebuild incrementally."""
    import numpy as np
    import pandas as pd

    from align_core.io.warehouse import rebuild_table_from_parquet

    row: dict[str, Any] = {"videos": videos, "frame_rows_per_video": frames_per_video}
    with tempfile.TemporaryDirectory(prefix="bench_warehouse_") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        frame = np.arange(frames_per_video, dtype=np.int64)
        started = time.perf_counter()
        files = []
        for v in range(videos):
            video_id = f"{7_200_000_000_000_000_000 + v}"
            directory = root / "artifacts" / "control_tensors" / video_id
            directory.mkdir(parents=True)
            path = directory / "alignment_frames.parquet"
            pd.DataFrame(
                {
                    "video_id": pd.Series([video_id] * frames_per_video, dtype=object),
                    "frame": frame,
                    "time_s": (frame + 0.5) / 30.0,
                    "scene_number": pd.array((frame // 150) + 1, dtype="Int64"),
                    "alignment": rng.random(frames_per_video),
                    "attention_mass": rng.random(frames_per_video) * 1e5,
                    "mask_coverage": rng.random(frames_per_video) * 0.2,
                }
            ).to_parquet(path, index=False)
            files.append(path)
        row["write_files_s"] = time.perf_counter() - started
        database = root / "warehouse.duckdb"
        started = time.perf_counter()
        full = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=False)
        row["full_rebuild_s"] = time.perf_counter() - started
        row["rows"] = full.rows
        started = time.perf_counter()
        nothing = rebuild_table_from_parquet(database, "frame_alignment", files, "video_id, frame", incremental=True)
        row["incremental_nothing_changed_s"] = time.perf_counter() - started
        row["nothing_changed_files_read"] = nothing.files_read
        for path in files[:changed]:  # a re-run partition rewrites its file
            table = pd.read_parquet(path)
            table["alignment"] = 1.0 - table["alignment"]
            table.to_parquet(path, index=False)
        started = time.perf_counter()
        incremental = rebuild_table_from_parquet(
            database, "frame_alignment", files, "video_id, frame", incremental=True
        )
        row["incremental_changed_s"] = time.perf_counter() - started
        row["changed_videos"] = changed
        row["changed_files_read"] = incremental.files_read
        row["rows_after"] = incremental.rows
        row["database_bytes"] = database.stat().st_size
    row["peak_mb"] = maxrss_mb()
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keywords", type=Path, default=SHARED_KEYWORDS, help="the real keywords.csv (ids)")
    parser.add_argument("--partitions", type=int, nargs="+", default=[10_000, 0], help="partition counts (0: every id)")
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument(
        "--before",
        type=int,
        nargs="*",
        default=[],
        help="also time the previous definitions (eager on every asset) at these counts",
    )
    parser.add_argument("--skip-automation", action="store_true")
    parser.add_argument("--warehouse-videos", type=int, nargs="*", default=[1_000, 5_000])
    parser.add_argument("--frames-per-video", type=int, default=900, help="frame rows per video (30 s at 30 fps)")
    parser.add_argument("--changed", type=int, default=16, help="videos re-run between two incremental rebuilds")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_partition_scale.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payload: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count()}
    if not args.skip_automation:
        ids = real_video_ids(args.keywords, None)
        rows = []
        plan = [(count, True) for count in args.before] + [(count, False) for count in args.partitions]
        for count, before in plan:
            count = len(ids) if count <= 0 else min(count, len(ids))
            print(
                f"[bench] automation tick with {count:,} partitions ({'before' if before else 'now'}) ...",
                file=sys.stderr,
                flush=True,
            )
            rows.append(automation_tick(count, ids, args.ticks, before=before))
            print(f"[bench]   {rows[-1]}", file=sys.stderr, flush=True)
        payload["automation"] = rows
        nan = float("nan")
        print(f"## Automation ticks with the real ids from {args.keywords.name} registered as partitions\n")
        print(
            "| partitions | definitions | register s | automation tick 1 s | tick 2 s (cursor) | per_video_automation tick, idle s | "
            "same, 100 new catalogs s (runs requested) | peak RSS MB |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            events = f"{r['per_video_events_s']:.2f} ({r['per_video_requested']})" if "per_video_events_s" in r else "-"
            print(
                f"| {r['partitions']:,} | {r['definitions']} | {r['register_s']:.1f} | {r['tick1_s']:.1f} | {r.get('tick2_s', nan):.1f} | "
                f"{r.get('per_video_idle_s', nan):.2f} | {events} | {r['peak_mb']:.0f} |"
            )
        print()
    if args.warehouse_videos:
        rows = []
        for videos in args.warehouse_videos:
            print(f"[bench] warehouse rebuild with {videos:,} videos ...", file=sys.stderr, flush=True)
            rows.append(warehouse_rebuild(videos, args.frames_per_video, min(args.changed, videos)))
            print(f"[bench]   {rows[-1]}", file=sys.stderr, flush=True)
        payload["warehouse"] = rows
        print(f"## frame_alignment table rebuild ({args.frames_per_video} frame rows per video)\n")
        print(
            "| videos | rows | full rebuild s | incremental, nothing changed s | incremental, "
            f"{args.changed} changed s | full, extrapolated to 100,000 videos s |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(
                f"| {r['videos']:,} | {r['rows']:,} | {r['full_rebuild_s']:.1f} | {r['incremental_nothing_changed_s']:.2f} | "
                f"{r['incremental_changed_s']:.2f} | {r['full_rebuild_s'] * 100_000 / r['videos']:.0f} |"
            )
        print()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
