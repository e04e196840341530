"""Real-size benchmark: 1080x1920 (9:16) ads at 30 fps, 15, 30 and 60 s, with audio and a product mask.

Usage::

    .venv/bin/python -m bench.bench_real_size                  # 15, 30 and 60 s at 1080x1920, 30 fps
    .venv/bin/python -m bench.bench_real_size --quick          # 1 and 2 s at 540x960, 30 fps (everyday)
    .venv/bin/python -m bench.bench_real_size --lengths 15 --stages corpus catalog attention masks control
    .venv/bin/python -m bench.bench_real_size --keep /tmp/real # keep the videos and artifacts

The ad is the demo's realistic-size ad (:func:`align_demo.real_size.write_real_size_ad`),
generated frame by frame: a panning textured background per scene (a cut about every 5 s),
moving distractor shapes, a product that moves, leaves, is absent for a scene and comes back,
a caption, a price tag and a call-to-action banner, and a mono AAC track, written with PyAV
(libx264) as it is drawn. The product mask of each frame is bit-packed and deflated as it is
drawn (:class:`~align_core.io.frames.MaskFrames`, the provided-mask file's per-frame layout), so
generating a 60 s ad holds one frame and one background canvas, never a stack of frames.

Each per-video stage then runs in its own child process through ``align_core`` exactly as
:mod:`bench.run_all` runs it (catalog, attention, masks, protected regions, control, plans,
variants, quality with the manipulation check), and the table prints wall time, peak RSS (``ru_maxrss`` of that child, imports
included), bytes on disk and, between the longest and the shortest ad, the growth ratios. Peak
memory is the figure that must stay flat (target: <= 2.5 GB for the 60 s ad); times on a shared
machine are inflated by whatever else runs there, so the growth exponent is the robust number.

Results also go to ``bench/results/bench_real_size.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import run_all  # noqa: E402

RESULTS = REPO / "bench" / "results"
STAGES = ("corpus", "catalog", "attention", "masks", "protect", "control", "plans", "variants", "quality")
DEPENDS: dict[str, tuple[str, ...]] = {
    "corpus": (),
    "catalog": ("corpus",),
    "attention": ("catalog",),
    "masks": ("catalog",),
    "protect": ("catalog",),
    "control": ("attention", "masks"),
    "plans": ("control",),
    "variants": ("plans", "protect"),
    "quality": ("variants",),
}
FULL_LENGTHS = (15.0, 30.0, 60.0)
QUICK_LENGTHS = (1.0, 2.0)
FULL_SIZE = (1080, 1920)  # width, height
QUICK_SIZE = (540, 960)
FPS = 30
VIDEO_ID = "realsize-ad"


# -- the streaming generator lives in the demo package (align_demo.real_size) -------------------
from align_demo.real_size import write_real_size_ad  # noqa: E402


# -- stages in the child ---------------------------------------------------------------------------
def stage_corpus(clock: run_all.Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    clock.imported()
    width, height = args.size
    info = write_real_size_ad(root, length, width, height, FPS, video_id=VIDEO_ID)
    (root / "bench_state.json").write_text(json.dumps({"video_id": info["video_id"]}))
    seconds = clock.elapsed()
    layout = run_all._layout(root)
    return {
        "seconds": seconds,
        "units": info["frames"],
        "unit": "frames",
        "frames": info["frames"],
        "bytes": run_all.tree_bytes(layout.raw_dir),
        "extra": {**info, "resolution": f"{width}x{height}", "fps": FPS},
    }


def stage_plans(clock: run_all.Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    """What the ``variant_plans`` asset does: read the control's alignment, plan, write the plan file."""
    from align_core.inputs.catalog import load_catalog
    from align_core.perception.control import load_control_tensors
    from align_core.stimuli.plans import plan_variants

    run_all._import_parquet()
    clock.imported()
    layout, video_id = run_all._layout(root), run_all._video_id(root)
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    control = load_control_tensors(layout.artifact_dir("control_tensors", video_id) / "control.npz")
    plans = plan_variants(video_id, control.alignment_per_frame(), catalog.probe.fps, catalog.scene_ranges)
    out = layout.artifact_dir("variant_plans", video_id)
    out.mkdir(parents=True, exist_ok=True)
    plans.to_json(out / "plans.json")
    plans.scene_table().to_parquet(out / "plan_scenes.parquet", index=False)
    seconds = clock.elapsed()
    return {
        "seconds": seconds,
        "units": plans.frame_count,
        "unit": "frames",
        "frames": plans.frame_count,
        "bytes": run_all.tree_bytes(out),
        "extra": {
            "product_frames": int(control.masks.any_per_frame().sum())
            if hasattr(control.masks, "any_per_frame")
            else None
        },
    }


STAGE_FUNCTIONS = {**run_all.STAGE_FUNCTIONS, "corpus": stage_corpus, "plans": stage_plans}


def run_child(args: argparse.Namespace) -> int:
    clock = run_all.Clock()
    root = run_all.length_dir(Path(args.work), args.length)
    root.mkdir(parents=True, exist_ok=True)
    run_all._apply_threads(args.threads)
    result = STAGE_FUNCTIONS[args.child](clock, root, args.length, args)
    result.update(
        threads=args.threads,
        stage=args.child,
        length_s=args.length,
        peak_mb=run_all.maxrss_mb(),
        import_mb=clock.import_mb,
        import_s=clock.import_s,
    )
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


def spawn(stage: str, length: float, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import subprocess

    result_path = work / "results" / f"{stage}-{length:g}.json"
    log_path = work / "logs" / f"{stage}-{length:g}.log"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.bench_real_size",
        "--child",
        stage,
        "--length",
        str(length),
        "--work",
        str(work),
        "--result",
        str(result_path),
        "--threads",
        str(args.threads),
        "--check-every",
        str(args.check_every),
        "--size",
        str(args.size[0]),
        str(args.size[1]),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        HF_HUB_OFFLINE="1",
        TQDM_DISABLE="1",
    )
    if args.threads > 0:
        env.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    started = time.perf_counter()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.stage_timeout
            )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    wall = time.perf_counter() - started
    if code != 0 or not result_path.exists():
        tail = log_path.read_text()[-1500:]
        return {
            "stage": stage,
            "length_s": length,
            "failed": f"exit {code} after {wall:.0f} s: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
            "child_wall_s": wall,
        }
    result = json.loads(result_path.read_text())
    result["child_wall_s"] = wall
    return result


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | video | frames | time s | rate | peak RSS MB | import MB | bytes on disk |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        if "failed" in row:
            lines.append(
                f"| {row['stage']} | {row['length_s']:g} s | - | {row['child_wall_s']:.0f} | FAILED: {row['failed'][:80]} | - | - | - |"
            )
            continue
        lines.append(
            f"| {row['stage']} | {row['length_s']:g} s | {row['frames']} | {row['seconds']:.1f} | {run_all._rate(row)} | "
            f"{row['peak_mb']:.0f} | {row['import_mb']:.0f} | {run_all._fmt_bytes(row['bytes'])} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths", type=float, nargs="+", default=None, help="ad lengths in seconds (default 15 30 60)"
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--quick", action="store_true", help="1 and 2 s ads at 540x960 (everyday use)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated ads and artifacts here")
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_real_size.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--check-every", type=int, default=15, help="manipulation check: measure every k-th frame")
    parser.add_argument("--stage-timeout", type=float, default=3600.0)
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else FULL_LENGTHS)
    if args.size is None:
        args.size = list(QUICK_SIZE if args.quick else FULL_SIZE)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    needed: set[str] = set()

    def add(stage: str) -> None:
        if stage not in needed:
            needed.add(stage)
            for dep in DEPENDS[stage]:
                add(dep)

    for stage in args.stages:
        add(stage)
    stages = [s for s in STAGES if s in needed]
    lengths = sorted(set(args.lengths))
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench_real_size_")
        work = Path(cleanup.name)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        for length in lengths:
            broken = False
            for stage in stages:
                if broken:
                    break
                print(f"[bench] {stage} {length:g} s ...", file=sys.stderr, flush=True)
                row = spawn(stage, length, work, args)
                rows.append(row)
                if "failed" in row:
                    print(f"[bench]   FAILED {row['failed']}", file=sys.stderr, flush=True)
                    broken = True
                else:
                    print(
                        f"[bench]   {row['seconds']:.1f} s, peak {row['peak_mb']:.0f} MB", file=sys.stderr, flush=True
                    )
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    total = time.perf_counter() - started
    ok = [r for r in rows if "failed" not in r]
    growth = run_all.growth_rows(ok)
    width, height = args.size
    print(f"## Real-size benchmark: {width}x{height} @ {FPS} fps, lengths {', '.join(f'{x:g} s' for x in lengths)}\n")
    print(_table(rows))
    print()
    if growth:
        print(f"Growth with video length ({lengths[-1]:g} s vs {lengths[0]:g} s):\n")
        print(run_all.growth_table(growth))
        print()
    per_video = {}
    for row in ok:
        if row["stage"] != "corpus":
            per_video[row["length_s"]] = per_video.get(row["length_s"], 0.0) + row["seconds"]
    print(
        "Per-video graph time (catalog to manipulation check, imports excluded): "
        + ", ".join(f"{k:g} s ad: {v:.0f} s" for k, v in sorted(per_video.items()))
    )
    worst = max((r["peak_mb"] for r in ok if r["stage"] != "corpus"), default=0.0)
    print(
        f"Largest stage peak RSS (generator excluded): {worst:.0f} MB (target <= 2560 MB). "
        f"Total wall time {total:.0f} s on {os.cpu_count()} CPUs, {args.threads} thread(s) per stage."
    )
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "size": [width, height],
        "fps": FPS,
        "lengths_s": lengths,
        "stages": stages,
        "rows": rows,
        "growth": growth,
        "total_wall_s": total,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
