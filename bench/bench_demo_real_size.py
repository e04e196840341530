"""The demo's realistic-size ad through the whole asset graph: per-stage time and peak memory.

Usage::

    .venv/bin/python -m bench.bench_demo_real_size                      # 20 s, 1080x1920, 30 fps
    .venv/bin/python -m bench.bench_demo_real_size --seconds 2 --size 540 960 --keep /tmp/rs

Builds a demo data directory the way ``align-demo`` does (``build_corpus``) with one standard
ad and the realistic-size ad, then materializes every asset for the realistic-size ad's
partition only (``materialize_everything([id])``: the per-video stages, then the unpartitioned
ones it feeds: checkpoint, warehouse tables, simulated A/B export, analysis report) in this
process, as ``align-demo`` does. Per-step wall times come from the Dagster event log (STEP_START
to STEP_SUCCESS/FAILURE); peak RSS per step from a 0.2 s RSS sampler over the step's interval
(the process is shared by every step, so a step's peak includes what earlier steps left
allocated). Times on a shared machine are inflated by whatever else runs there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, nargs=2, default=(1080, 1920), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--keep", type=Path, default=None, help="data directory to use and keep")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="only print the table of an earlier (or interrupted) run in this data directory",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue an interrupted run in this data directory: materialize what is not done yet",
    )
    parser.add_argument(
        "--measure-every",
        type=int,
        default=None,
        help="variant_quality: score every k-th frame (default: the asset's own, 2)",
    )
    parser.add_argument(
        "--redo-downstream-of",
        default=None,
        metavar="ASSET",
        help="with --resume: also re-materialize everything downstream of ASSET",
    )
    args = parser.parse_args(argv)
    if args.report:
        return report(args.report)
    op_config = (
        {"variant_quality": {"measure_every": args.measure_every, "lpips_every": max(10, args.measure_every)}}
        if args.measure_every
        else None
    )
    if args.resume:
        return resume(args.resume, op_config, args.redo_downstream_of)

    from align_assets.runner import prepare_instance, quiet_dagster_warnings
    from align_core.io.layout import DataLayout
    from align_demo.corpus import generate_demo_corpus

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_demo_real_size_"))
    layout = DataLayout(root).ensure()
    os.environ["ALIGN_DATA_DIR"] = str(layout.root)
    os.environ.setdefault("ALIGN_PROFILE", "demo")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_instance(layout.dagster_home)
    shared = REPO.parent / "shared" / "data" / "keywords.csv"
    started = time.perf_counter()
    corpus = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=7,
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
        keywords_source=shared if shared.exists() else None,
        real_size_ads=1,
        real_size_seconds=args.seconds,
        real_size_frame=tuple(args.size),
    )
    generate_s = time.perf_counter() - started
    video = corpus.real_size_videos[0]
    print(
        f"corpus: {generate_s:.1f} s; realistic-size ad {video.video_id} ({video.keyword}, {video.industry}), "
        f"{video.width}x{video.height} @ {video.fps:g} fps, {video.n_frames} frames, "
        f"{video.path.stat().st_size / 1e6:.1f} MB video, {video.mask_path.stat().st_size / 1e3:.0f} KB mask",
        flush=True,
    )

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:  # also to a file, so an interrupted run can still be reported (--report)
        with open(root / "rss_samples.tsv", "a") as out:
            while not done.is_set():
                samples.append((time.time(), _rss_mb()))
                out.write(f"{samples[-1][0]:.2f}\t{samples[-1][1]:.0f}\n")
                out.flush()
                done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    quiet_dagster_warnings()
    from dagster import DagsterInstance

    from align_assets.runner import materialize_everything

    instance = DagsterInstance.get()
    graph_started = time.perf_counter()
    failures = materialize_everything([video.video_id], instance=instance, watch=False, op_config=op_config)
    graph_s = time.perf_counter() - graph_started
    done.set()
    sampler.join()

    _print_steps(instance, samples)
    print(
        f"\nGraph for the realistic-size ad: {graph_s:.0f} s (corpus {generate_s:.0f} s before it); "
        f"process peak RSS {max((r for _, r in samples), default=0):.0f} MB; {os.cpu_count()} CPUs; data in {root}"
    )
    for key, messages in failures.items():
        for message in messages:
            print(f"FAILED {key}: {message}")
    return 1 if failures else 0


def resume(root: Path, op_config: dict | None, redo_downstream_of: str | None = None) -> int:
    """Materialize, for the realistic-size ad's partition, every asset without a successful step yet."""
    import json

    from align_assets.runner import prepare_instance, quiet_dagster_warnings

    os.environ["ALIGN_DATA_DIR"] = str(root)
    os.environ.setdefault("ALIGN_PROFILE", "demo")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_instance(Path(root) / "dagster_home")
    quiet_dagster_warnings()
    from dagster import DagsterInstance

    from align_assets.definitions import defs
    from align_assets.recovery import reclaim
    from align_assets.runner import materialize_everything
    from align_core.io.layout import DataLayout

    instance = DagsterInstance.get()
    for line in reclaim(instance, DataLayout(Path(root))).lines():  # the interrupted run's pool slots
        print(f"reclaimed: {line}", flush=True)
    done = {
        record.step_key
        for run in instance.get_runs()
        for record in instance.all_logs(run.run_id)
        if record.dagster_event is not None and record.dagster_event.event_type_value == "STEP_SUCCESS"
    }
    graph = defs.resolve_asset_graph()
    names = sorted(k.to_user_string() for k in graph.materializable_asset_keys)
    todo = {name for name in names if name not in done}
    if redo_downstream_of:
        frontier = [key for key in graph.materializable_asset_keys if key.to_user_string() == redo_downstream_of]
        while frontier:
            children = [
                c for key in frontier for c in graph.get(key).child_keys if c in graph.materializable_asset_keys
            ]
            todo |= {c.to_user_string() for c in children}
            frontier = children
    todo = sorted(todo)
    video_id = json.loads((Path(root) / "raw" / "demo_corpus.json").read_text())["real_size_ads"][0]["video_id"]
    print(f"resuming {video_id}: {', '.join(todo)}", flush=True)
    samples_out = open(Path(root) / "rss_samples.tsv", "a")
    finished = threading.Event()

    def sample() -> None:
        while not finished.is_set():
            samples_out.write(f"{time.time():.2f}\t{_rss_mb():.0f}\n")
            samples_out.flush()
            finished.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    failures = materialize_everything([video_id], instance=instance, watch=False, assets=todo, op_config=op_config)
    finished.set()
    sampler.join()
    samples_out.close()
    print(f"resumed part: {time.perf_counter() - started:.0f} s")
    report(root)
    for key, messages in failures.items():
        for message in messages:
            print(f"FAILED {key}: {message}")
    return 1 if failures else 0


def report(root: Path) -> int:
    """The step table of the run(s) in ``root``'s Dagster instance, with the RSS samples written so far."""
    from align_assets.runner import prepare_instance

    prepare_instance(Path(root) / "dagster_home")
    from dagster import DagsterInstance

    path = Path(root) / "rss_samples.tsv"
    samples = (
        [tuple(float(v) for v in line.split("\t")) for line in path.read_text().splitlines()] if path.exists() else []
    )
    _print_steps(DagsterInstance.get(), samples)
    return 0


def _print_steps(instance, samples: list[tuple[float, float]]) -> None:
    steps: dict[str, dict] = {}
    for run in reversed(instance.get_runs()):  # oldest first: a re-run step reports its latest run
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or not record.step_key:
                continue
            kind = event.event_type_value
            entry = steps.setdefault(record.step_key, {})
            if kind == "STEP_START":
                entry["start"] = record.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                entry["end"], entry["status"] = record.timestamp, "ok" if kind == "STEP_SUCCESS" else "FAILED"
    rows = sorted((v["start"], k, v) for k, v in steps.items() if "start" in v and "end" in v)
    print("\n| step | status | wall s | peak RSS MB during step |\n| --- | --- | ---: | ---: |")
    for start, key, entry in rows:
        peak = max((rss for t, rss in samples if start <= t <= entry["end"]), default=float("nan"))
        print(f"| {key} | {entry['status']} | {entry['end'] - start:.1f} | {peak:.0f} |")
    for key, entry in steps.items():
        if "start" in entry and "end" not in entry:
            print(f"| {key} | started, not finished | {time.time() - entry['start']:.0f} so far | - |")


if __name__ == "__main__":
    sys.exit(main())
