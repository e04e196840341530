"""Every stage's benchmark on the demo corpus, in one table: time, rate, peak memory, bytes, growth.

Usage::

    .venv/bin/python -m bench.run_all                      # lengths 4 s and 10 s, every stage
    .venv/bin/python -m bench.run_all --lengths 4 10 20    # more lengths
    .venv/bin/python -m bench.run_all --stages corpus catalog attention masks control
    .venv/bin/python -m bench.run_all --quick              # 4 s and 6 s videos, 3 training steps
    .venv/bin/python -m bench.run_all --keep /tmp/bench    # keep the intermediate files

For each length ``L`` one demo video of exactly ``L`` seconds (288x512, 12 fps, the demo
corpus's defaults) is generated, and every per-video stage runs on it through the same
``align_core.stages`` function its Dagster asset calls, with the demo profile's components:

==============  ================================================================================
corpus          ``align_demo.corpus.generate_demo_corpus`` (one video, its audio, provided masks, the CSVs)
catalog         ``run_catalog`` (probe, scenes -> frames, keyword screen)
attention       ``run_attention`` (``feature_richness`` scorer)
masks           ``run_masks`` (``provided`` segmenter)
control         ``run_control`` (tensors, alignment tables, plots)
training        ``run_checkpoint`` on the shortest video (tiny backbone; once, not per length: its
                cost is per step, not per video second)
variants        ``run_plans`` + ``run_variant_videos`` with the ``salience`` editor (calibration, 7
                H.264 mp4s, comparison mp4, contact sheet, manifest); rate = variant frames per second
quality         ``run_variant_quality`` without LPIPS (temporal consistency, background fidelity, and
                the manipulation check measured with the attention stage's scorer)
analysis        ``simulate_ab_export`` for the benchmark's videos -> ``ingest_export`` into a fresh
                DuckDB -> ``analysis.report.build_report`` (once)
==============  ================================================================================

Each (stage, length) runs in its own child process (``python -m bench.run_all --child ...``),
so its peak memory (``ru_maxrss``) is its own. The peak INCLUDES the stage's imports (torch,
diffusers, pandas, ...): the ``import MB`` column is the child's peak right after its imports
and before any work, and the line under the table gives the interpreter with every module the
benchmark imports. Times exclude imports (import time is in the JSON). Stages share one temp
directory (stage N reads what stage N-1 wrote), removed at the end unless ``--keep``. A stage
selected without the stages it reads from gets them run first (marked ``dep`` in the table).

Each child caps torch's, OpenCV's and BLAS's threads at ``--threads`` (default 1): on the shared
2-core machine two intra-op threads made a tiny ControlNet step 20-80x slower (1-7 s instead of
0.08 s) whenever another process was busy, and the Dagster multiprocess executor runs one step
per core anyway. ``--threads 0`` keeps the libraries' defaults.

The growth table compares the longest and the shortest video: the frame-count ratio beside the
ratios of time, bytes and peak memory, and ``time exponent`` = log(time ratio) / log(frame
ratio) (1 = linear in video length; above 1.2 is flagged superlinear, unless the short video's
stage took under 0.5 s, where process noise dominates).

Results also go to ``bench/results/run_all.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

STAGES = (
    "corpus",
    "catalog",
    "attention",
    "masks",
    "protect",
    "control",
    "training",
    "variants",
    "quality",
    "analysis",
)
ONCE = ("training", "analysis")  # not per video length
DEPENDS: dict[str, tuple[str, ...]] = {
    "corpus": (),
    "catalog": ("corpus",),
    "attention": ("catalog",),
    "masks": ("catalog",),
    "protect": ("catalog",),
    "control": ("attention", "masks"),
    "training": ("control",),
    "variants": ("control", "protect"),
    "quality": ("variants",),
    "analysis": ("catalog",),
}
DEFAULT_LENGTHS = (4.0, 10.0)
QUICK_LENGTHS = (4.0, 6.0)  # the demo corpus needs 3 scenes of >= 1.25 s
SEED = 7
MIN_SECONDS_FOR_GROWTH = 0.5  # below this a stage's time ratio is mostly process noise


# -- helpers shared by the children ---------------------------------------------------------------
def maxrss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tree_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        path = Path(path)
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def length_dir(work: Path, length: float) -> Path:
    return work / f"len_{length:g}s"


class Clock:
    """Marks the end of a child's imports, so the work is timed and measured apart from them."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.import_s = 0.0
        self.import_mb = 0.0
        self.work_started = self.started

    def imported(self) -> None:
        now = time.perf_counter()
        self.import_s = now - self.started
        self.import_mb = maxrss_mb()
        self.work_started = now

    def elapsed(self) -> float:
        return time.perf_counter() - self.work_started


def _import_parquet() -> None:
    """pandas imports pyarrow on the first ``to_parquet``: count that as import, not as work."""
    import pyarrow.parquet  # noqa: F401


def _apply_threads(threads: int) -> None:
    """Cap OpenCV's and torch's intra-op threads (0: leave the libraries' defaults)."""
    if threads <= 0:
        return
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _video_id(root: Path) -> str:
    return json.loads((root / "bench_state.json").read_text())["video_id"]


def _layout(root: Path):
    from align_core.io.layout import DataLayout

    return DataLayout(root)


# -- stages (run in the child; each returns units, unit name, bytes and extras) -------------------
def stage_corpus(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.io.layout import DataLayout
    from align_demo.corpus import generate_demo_corpus

    clock.imported()
    corpus = generate_demo_corpus(
        DataLayout(root),
        n_videos=1,
        seed=SEED,
        duration_range_s=(length, length),
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
    )
    seconds = clock.elapsed()
    video = corpus.videos[0]
    (root / "bench_state.json").write_text(json.dumps({"video_id": video.video_id}))
    layout = corpus.layout
    path = layout.video_path(video.video_id)
    from align_core.io.video_io import probe_video

    probe = probe_video(path)
    return {
        "seconds": seconds,
        "units": probe.frame_count,
        "unit": "frames",
        "frames": probe.frame_count,
        "bytes": tree_bytes(layout.raw_dir),
        "extra": {
            "video_bytes": path.stat().st_size,
            "mask_bytes": tree_bytes(layout.masks_dir),
            "resolution": f"{probe.width}x{probe.height}",
            "fps": probe.fps,
            "has_audio": probe.has_audio,
        },
    }


def _measure():
    """The demo profile's attention measure (the scorer resource's default)."""
    from align_core.components import ScorerChoice
    from align_core.stages.attention import AttentionMeasure

    return AttentionMeasure.from_choice(ScorerChoice(scorer="feature_richness"))


def stage_catalog(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.stages.catalog import run_catalog

    _import_parquet()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    result = run_catalog(layout, video_id)
    seconds = clock.elapsed()
    catalog = result.catalog
    frames = catalog.probe.frame_count
    return {
        "seconds": seconds,
        "units": frames,
        "unit": "frames",
        "frames": frames,
        "bytes": tree_bytes(*result.paths.values()),
        "extra": {
            "scenes": len(catalog.scenes),
            "scene_source": catalog.scene_source,
            "keyword": catalog.keyword.keyword,
            "keyword_status": catalog.keyword.status,
        },
    }


def stage_attention(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.stages.attention import AttentionSettings, run_attention

    measure = _measure()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    settings = AttentionSettings()
    result = run_attention(layout, video_id, measure, settings)
    seconds = clock.elapsed()
    maps = result.maps
    keyframes = len(maps.keyframe_indices)
    return {
        "seconds": seconds,
        "units": maps.frame_count,
        "unit": "frames",
        "frames": maps.frame_count,
        "bytes": result.path.stat().st_size,
        "extra": {
            "keyframes_scored": keyframes,
            "s_per_keyframe": seconds / max(1, keyframes),
            "keyframe_stride": settings.keyframe_stride,
        },
    }


def stage_masks(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.components import SegmenterChoice
    from align_core.stages.masks import run_masks

    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    stage = run_masks(layout, video_id, SegmenterChoice(segmenter="provided"))
    seconds = clock.elapsed()
    result = stage.result
    return {
        "seconds": seconds,
        "units": result.frame_count,
        "unit": "frames",
        "frames": result.frame_count,
        "bytes": stage.path.stat().st_size,
        "extra": {
            "frames_with_product": int((result.coverage > 0).sum()),
            "mean_coverage": float(result.coverage.mean()),
            "skipped_reason": result.skipped_reason,
        },
    }


def stage_protect(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.stages.protect import ProtectSettings, run_protect

    _import_parquet()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    result = run_protect(layout, video_id, ProtectSettings())
    seconds = clock.elapsed()
    regions = result.regions
    return {
        "seconds": seconds,
        "units": regions.frame_count,
        "unit": "frames",
        "frames": regions.frame_count,
        "bytes": tree_bytes(*result.paths.values()),
        "extra": {"ocr_keyframes": len(regions.keyframes), "text_detections": regions.summary()["text_detections"]},
    }


def stage_control(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.stages.control import run_control

    _import_parquet()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    result = run_control(layout, video_id)
    seconds = clock.elapsed()
    control = result.control
    t, h, w = control.masks.shape
    return {
        "seconds": seconds,
        "units": t,
        "unit": "frames",
        "frames": t,
        "bytes": tree_bytes(*result.paths.values()),
        "extra": {
            "control_npz_bytes": result.paths["control"].stat().st_size,
            "float32_equivalent_bytes": 2 * t * h * w * 4,
            "mean_alignment": float(control.alignment_per_frame().mean()),
        },
    }


def stage_training(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    from align_core.stages.checkpoint import CheckpointSettings, run_checkpoint

    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import align_core.stimuli.diffusion  # noqa: F401  (imports timed apart from the work)

    _apply_threads(args.threads)
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    settings = CheckpointSettings(
        steps=args.train_steps,
        batch_size=2,
        resolution=args.train_resolution,
        warmup_steps=0,
        checkpoint_every=args.train_steps,
        validate_every=0,
        val_fraction=0.0,
        frame_stride=1,
        max_frames_per_video=args.train_samples,
        cpu_threads=max(0, args.threads),
    )
    result = run_checkpoint(layout, [video_id], settings, log=lambda message: None)
    seconds = clock.elapsed()
    training = result.training
    steps = training.steps or args.train_steps
    return {
        "seconds": seconds,
        "units": steps,
        "unit": "steps",
        "frames": result.train_frames,
        "bytes": tree_bytes(layout.artifact_dir("controlnet_checkpoint")),
        "extra": {
            "s_per_step": seconds / max(1, steps),
            "samples": result.train_frames,
            "resolution": args.train_resolution,
            "batch_size": settings.batch_size,
            "backbone_bytes": tree_bytes(layout.models_dir / "tiny-sd"),
            "last_loss": training.loss_history[-1]["loss"] if training.loss_history else None,
            "lpips_backbone": result.current["lpips_backbone"],
        },
    }


def stage_variants(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.components import EditorChoice
    from align_core.stages.variants import VariantPlanSettings, VariantVideoSettings, run_plans, run_variant_videos

    _import_parquet()
    measure = _measure()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    run_plans(layout, video_id, VariantPlanSettings())
    result = run_variant_videos(layout, video_id, EditorChoice(editor="salience"), measure, VariantVideoSettings())
    seconds = clock.elapsed()
    if result.skipped_reason:
        raise RuntimeError(f"benchmark video {video_id} was skipped for editing: {result.skipped_reason}")
    render = result.outcome.render
    n_variants = len(render.variant_paths)
    frames = result.frames_edited // max(1, n_variants)
    return {
        "seconds": seconds,
        "units": result.frames_edited,
        "unit": "variant frames",
        "frames": frames,
        "bytes": tree_bytes(*render.variant_paths.values()),
        "extra": {
            "variants": n_variants,
            "all_outputs_bytes": tree_bytes(layout.artifact_dir("variant_videos", video_id)),
            "comparison_bytes": tree_bytes(render.comparison_path),
            "keyframe_share": render.keyframe_share,
            "edit_calls": render.edit_calls,
            "render_timings": render.timings,
            "pipeline_timings": result.outcome.timings,
        },
    }


def stage_quality(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    from align_core.stages.variants import VariantQualitySettings, run_variant_quality

    _import_parquet()
    measure = _measure()
    clock.imported()
    layout, video_id = _layout(root), _video_id(root)
    settings = VariantQualitySettings(measure_every=args.check_every)
    result = run_variant_quality(layout, video_id, measure, settings, lpips=False)
    seconds = clock.elapsed()
    report = result.report
    from align_core.inputs.catalog import load_catalog

    frames = load_catalog(layout.artifact_dir("video_catalog", video_id)).probe.frame_count
    n_variants = int(report.verdicts.shape[0])
    return {
        "seconds": seconds,
        "units": n_variants * frames,
        "unit": "variant frames",
        "frames": frames,
        "bytes": tree_bytes(*result.paths.values()),
        "extra": {
            "every": args.check_every,
            "passed": bool(report.passed),
            "rows": len(result.quality),
            "verdicts": {str(r["variant"]): bool(r["passed"]) for _, r in report.verdicts.iterrows()},
        },
    }


def stage_analysis(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    import duckdb
    import pandas as pd

    from align_core.experiments.ab_results import ingest_export
    from align_core.inputs.catalog import load_catalog
    from align_demo.ab_simulator import SimulationEffects, simulate_ab_export
    from analysis.report import build_report

    clock.imported()
    # ``root`` is the shared work dir here: every length's video takes part in the experiment.
    rows = []
    for state in sorted(root.glob("len_*/bench_state.json")):
        video_root = state.parent
        video_id = _video_id(video_root)
        row = load_catalog(_layout(video_root).artifact_dir("video_catalog", video_id)).video_row()
        # every length's corpus uses the same seed (same ad, different length), hence the same id
        row["video_id"] = f"{video_id}-{video_root.name.replace('.', '_')}"
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no catalogued videos under {root}")
    videos = pd.DataFrame(rows)[["video_id", "industry"]]
    videos["video_id"] = videos["video_id"].astype(str)
    videos["industry"] = videos["industry"].fillna("unknown")
    # The analysis clusters by video: with only the benchmark's 2 videos the timing contrasts'
    # cluster-robust covariance is singular (analysis.timing raises LinAlgError), so the
    # experiment is padded with simulated-only ids up to --ab-videos.
    industries = sorted(set(videos["industry"])) + ["Beauty", "Electronics", "Food"]
    pad = [
        {"video_id": f"bench-sim-{k:03d}", "industry": industries[k % len(industries)]}
        for k in range(max(0, args.ab_videos - len(videos)))
    ]
    n_bench_videos = len(videos)
    videos = pd.concat([videos, pd.DataFrame(pad)], ignore_index=True)
    out = root / "analysis"
    database = out / "warehouse.duckdb"
    out.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    with duckdb.connect(str(database)) as con:
        con.register("v", videos)
        con.execute("CREATE TABLE videos AS SELECT CAST(video_id AS VARCHAR) AS video_id, industry FROM v")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    export = simulate_ab_export(
        videos,
        out / "inbox" / "bench-exp.csv",
        effects=SimulationEffects(),
        seed=11,
        days=7,
        impressions_per_arm=args.impressions_per_arm,
    )
    timings["simulate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    ingest = ingest_export(export, database)
    timings["ingest_s"] = time.perf_counter() - started
    if not ingest.ok:
        raise RuntimeError(f"ingest rejected the simulated export: {ingest.errors[:5]}")
    started = time.perf_counter()
    report = build_report(database, out / "report")
    timings["report_s"] = time.perf_counter() - started
    seconds = clock.elapsed()
    return {
        "seconds": seconds,
        "units": int(ingest.impressions),
        "unit": "impressions",
        "frames": 0,
        "bytes": tree_bytes(database, out / "report"),
        "extra": {
            **timings,
            "videos": len(videos),
            "benchmark_videos": n_bench_videos,
            "export_rows": int(ingest.rows),
            "lift_rows": len(report.tables.get("analysis_lift", [])),
        },
    }


def stage_imports(clock: Clock, root: Path, length: float, args: argparse.Namespace) -> dict[str, Any]:
    """Baseline: every module the benchmark's stages import, and nothing else."""
    import align_core.experiments.ab_results  # noqa: F401
    import align_core.inputs.catalog  # noqa: F401
    import align_core.measurement.manipulation  # noqa: F401
    import align_core.measurement.quality  # noqa: F401
    import align_core.perception.attention  # noqa: F401
    import align_core.perception.control  # noqa: F401
    import align_core.perception.masks  # noqa: F401
    import align_core.stages.variants  # noqa: F401
    import align_core.stimuli.diffusion  # noqa: F401
    import align_core.stimuli.editing.render  # noqa: F401
    import align_core.stimuli.editing.salience  # noqa: F401
    import align_demo.corpus  # noqa: F401
    import analysis.report  # noqa: F401

    clock.imported()
    return {"seconds": 0.0, "units": 0, "unit": "", "frames": 0, "bytes": 0, "extra": {}}


STAGE_FUNCTIONS: dict[str, Callable[[Clock, Path, float, argparse.Namespace], dict[str, Any]]] = {
    "corpus": stage_corpus,
    "catalog": stage_catalog,
    "attention": stage_attention,
    "masks": stage_masks,
    "protect": stage_protect,
    "control": stage_control,
    "training": stage_training,
    "variants": stage_variants,
    "quality": stage_quality,
    "analysis": stage_analysis,
    "imports": stage_imports,
}


def run_child(args: argparse.Namespace) -> int:
    clock = Clock()
    stage, length, work = args.child, args.length, Path(args.work)
    root = work if stage in ("analysis", "imports") else length_dir(work, length)
    root.mkdir(parents=True, exist_ok=True)
    _apply_threads(args.threads)
    result = STAGE_FUNCTIONS[stage](clock, root, length, args)
    result.update(
        threads=args.threads,
        stage=stage,
        length_s=length,
        peak_mb=maxrss_mb(),
        import_mb=clock.import_mb,
        import_s=clock.import_s,
    )
    Path(args.result).write_text(json.dumps(result, default=str))
    return 0


# -- parent: schedule the children, collect, print -------------------------------------------------
def with_dependencies(selected: list[str]) -> tuple[list[str], set[str]]:
    """Selected stages plus whatever they read from, in pipeline order; the second item: the added ones."""
    needed: set[str] = set()

    def add(stage: str) -> None:
        if stage not in needed:
            needed.add(stage)
            for dep in DEPENDS[stage]:
                add(dep)

    for stage in selected:
        add(stage)
    return [s for s in STAGES if s in needed], needed - set(selected)


def spawn(stage: str, length: float, work: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    result_path = work / "results" / f"{stage}-{length:g}.json"
    log_path = work / "logs" / f"{stage}-{length:g}.log"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "bench.run_all",
        "--child",
        stage,
        "--length",
        str(length),
        "--work",
        str(work),
        "--result",
        str(result_path),
        "--train-steps",
        str(args.train_steps),
        "--train-resolution",
        str(args.train_resolution),
        "--train-samples",
        str(args.train_samples),
        "--check-every",
        str(args.check_every),
        "--impressions-per-arm",
        str(args.impressions_per_arm),
        "--ab-videos",
        str(args.ab_videos),
        "--threads",
        str(args.threads),
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
    with open(log_path, "w") as log:
        proc = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"stage {stage} (length {length:g} s) failed with exit code {proc.returncode}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["child_wall_s"] = wall
    return result


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _rate(row: dict[str, Any]) -> str:
    if row["stage"] == "training":
        return f"{row['extra']['s_per_step']:.3f} s/step"
    if not row["units"] or row["seconds"] <= 0:
        return "-"
    rate = row["units"] / row["seconds"]
    return f"{rate:,.1f} {row['unit']}/s" if rate < 1e4 else f"{rate:,.0f} {row['unit']}/s"


def stage_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | video | frames | time s | rate | peak MB | import MB | bytes on disk |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        video = "all" if row["stage"] == "analysis" else f"{row['length_s']:g} s"
        if row["stage"] == "training":
            video += " (once)"
        label = row["stage"] + (" (dep)" if row.get("dependency") else "")
        frames = "-" if row["stage"] == "analysis" else str(row["frames"])
        if row["stage"] == "training":
            frames += " samples"
        lines.append(
            f"| {label} | {video} | {frames} | {row['seconds']:.2f} | {_rate(row)} | {row['peak_mb']:.0f} | "
            f"{row['import_mb']:.0f} | {_fmt_bytes(row['bytes'])} |"
        )
    return "\n".join(lines)


def growth_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["stage"] not in ONCE:
            by_stage.setdefault(row["stage"], []).append(row)
    out = []
    for stage, group in by_stage.items():
        if len(group) < 2:
            continue
        short, long = min(group, key=lambda r: r["length_s"]), max(group, key=lambda r: r["length_s"])
        frame_ratio = long["frames"] / max(1, short["frames"])
        time_ratio = long["seconds"] / short["seconds"] if short["seconds"] > 0 else float("nan")
        exponent = math.log(time_ratio) / math.log(frame_ratio) if frame_ratio > 1 and time_ratio > 0 else float("nan")
        out.append(
            {
                "stage": stage,
                "lengths": f"{long['length_s']:g}s/{short['length_s']:g}s",
                "frame_ratio": frame_ratio,
                "time_ratio": time_ratio,
                "bytes_ratio": long["bytes"] / short["bytes"] if short["bytes"] else float("nan"),
                "peak_ratio": long["peak_mb"] / short["peak_mb"],
                "work_peak_mb_short": short["peak_mb"] - short["import_mb"],
                "work_peak_mb_long": long["peak_mb"] - long["import_mb"],
                "time_exponent": exponent,
                "short_seconds": short["seconds"],
            }
        )
    return out


def growth_table(growth: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | lengths | frames ratio | time ratio | bytes ratio | peak MB ratio | peak above imports MB (short -> long) | time exponent |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for g in growth:
        if g["short_seconds"] < MIN_SECONDS_FOR_GROWTH:
            flag = " (too short to tell)"
        else:
            flag = " (superlinear)" if g["time_exponent"] > 1.2 else ""
        lines.append(
            f"| {g['stage']} | {g['lengths']} | {g['frame_ratio']:.2f} | {g['time_ratio']:.2f} | {g['bytes_ratio']:.2f} | "
            f"{g['peak_ratio']:.2f} | {g['work_peak_mb_short']:.0f} -> {g['work_peak_mb_long']:.0f} | {g['time_exponent']:.2f}{flag} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths", type=float, nargs="+", default=None, help="video lengths in seconds (default 4 10)"
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--quick", action="store_true", help="4 s and 6 s videos, 3 training steps, fewer impressions")
    parser.add_argument("--keep", type=Path, default=None, help="keep the intermediate files in this directory")
    parser.add_argument("--json", type=Path, default=RESULTS / "run_all.json", help="where to write the results")
    parser.add_argument("--train-steps", type=int, default=None, help="ControlNet steps (default 10; quick 3)")
    parser.add_argument("--train-resolution", type=int, default=64)
    parser.add_argument("--train-samples", type=int, default=8, help="frames (with their control) to train on")
    parser.add_argument(
        "--check-every",
        type=int,
        default=None,
        help="manipulation check: measure every k-th frame (default 1; quick 3)",
    )
    parser.add_argument("--impressions-per-arm", type=int, default=None, help="simulated A/B (default 3000; quick 500)")
    parser.add_argument(
        "--ab-videos", type=int, default=12, help="videos in the simulated A/B (benchmark's + simulated-only ids)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads for torch, OpenCV and BLAS in each stage (default 1; 0: library defaults)",
    )
    parser.add_argument("--stage-timeout", type=float, default=900.0, help="seconds before a stage's child is killed")
    # child mode (internal)
    parser.add_argument("--child", choices=[*STAGES, "imports"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else DEFAULT_LENGTHS)
    if args.train_steps is None:
        args.train_steps = 3 if args.quick else 10
    if args.check_every is None:
        args.check_every = 3 if args.quick else 1
    if args.impressions_per_arm is None:
        args.impressions_per_arm = 500 if args.quick else 3000
    if any(length <= 0 for length in args.lengths):
        parser.error("--lengths must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)

    stages, added = with_dependencies(args.stages)
    lengths = sorted(set(args.lengths))
    if args.keep:
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench_run_all_")
        work = Path(cleanup.name)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        baseline = spawn("imports", 0.0, work, args, args.stage_timeout)
        for stage in stages:
            # training runs once, on the shortest video; analysis once, over every video
            stage_lengths = lengths[:1] if stage in ONCE else lengths
            for length in stage_lengths:
                print(
                    f"[bench] {stage} {'all videos' if stage == 'analysis' else f'{length:g} s'} ...",
                    file=sys.stderr,
                    flush=True,
                )
                row = spawn(stage, length, work, args, args.stage_timeout)
                row["dependency"] = stage in added
                rows.append(row)
                print(f"[bench]   {row['seconds']:.2f} s, peak {row['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    total = time.perf_counter() - started

    growth = growth_rows(rows)
    print(f"## Benchmark: demo corpus, 288x512 @ 12 fps, lengths {', '.join(f'{x:g} s' for x in lengths)}\n")
    print(stage_table(rows))
    print()
    if growth:
        print(f"Growth with video length ({lengths[-1]:g} s vs {lengths[0]:g} s):\n")
        print(growth_table(growth))
        print()
    print(
        f"Peak MB is each stage's own child process (ru_maxrss) and INCLUDES its imports; import MB is that child's "
        f"peak right after its imports. Import-only baseline (every module the benchmark uses): "
        f"{baseline['import_mb']:.0f} MB, {baseline['import_s']:.1f} s. Times exclude imports. "
        f"Total wall time {total:.0f} s on {os.cpu_count()} CPUs."
    )
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "lengths_s": lengths,
        "stages": stages,
        "dependencies_added": sorted(added),
        "quick": args.quick,
        "train_steps": args.train_steps,
        "check_every": args.check_every,
        "import_baseline": baseline,
        "rows": rows,
        "growth": growth,
        "total_wall_s": total,
        "kept": str(work) if args.keep else None,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(args.json)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
