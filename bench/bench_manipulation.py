"""Manipulation-check benchmark on the demo corpus with the platform's real attention scorer.

Usage::

    .venv/bin/python bench/bench_manipulation.py [--data-dir /tmp/demo3] [--videos ID ...] [--keep DIR]

For each edited demo video (default: the four the demo edits) the bench runs what the
``variant_videos`` and ``variant_quality`` assets run, through the same library function
(:func:`align_core.editing.pipeline.calibrate_render_check`): the salience editor's strength map
calibrated on ``calibration_frames`` (6) keyframes with ``attention_map(frame,
make_patch_scorer("feature_richness"), AttentionConfig())``, ``render_variants`` with stride 8 and
seed 0 into a temp directory, then ``check_rendered_variants`` with the default
:class:`CheckThresholds` (min_share 0.25, tolerance 0.03) measuring every 2nd frame.

It reads the stored artifacts (catalog, control tensors, plans) from ``<data-dir>/artifacts`` and
never writes there. Printed: one row per (video, variant) with the verdict, the achieved share of
the planned change in each window that plans one (``e/m/l/all``), and for the baseline and placebo
the largest |alignment change| over the windows (vs original / vs the baseline variant). Results
also go to ``bench/results/bench_manipulation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from align_core.attention import AttentionConfig, attention_map, make_patch_scorer  # noqa: E402
from align_core.catalog import load_catalog  # noqa: E402
from align_core.control import load_control_tensors  # noqa: E402
from align_core.editing.pipeline import calibrate_render_check  # noqa: E402
from align_core.editing.salience import SalienceEditor  # noqa: E402
from align_core.manipulation import CheckThresholds  # noqa: E402
from align_core.variants import load_variant_plans  # noqa: E402

DEMO_VIDEOS = ("7222520718999059196", "7262509546660466700", "7277568569024519353", "7289721380096957551")
WINDOWS = ("early", "middle", "late", "all")


def real_attention_fn():
    """The scorer the demo profile's assets use (``_attention_fn`` in align_assets/assets/variants.py)."""
    scorer = make_patch_scorer("feature_richness")
    procedure = AttentionConfig()

    def score(frame: np.ndarray) -> np.ndarray:
        return attention_map(frame, scorer, procedure)

    score.name = f"attention_map[{scorer.scorer_id}]"  # type: ignore[attr-defined]
    return score


def run_video(data_dir: Path, video_id: str, out_root: Path, attention_fn, args) -> dict:
    art = data_dir / "artifacts"
    catalog = load_catalog(art / "video_catalog" / video_id)
    plans = load_variant_plans(art / "variant_plans" / video_id / "plans.json")
    control = load_control_tensors(art / "control_tensors" / video_id / "control.npz")
    video_path = catalog.probe.path
    if not Path(video_path).exists():  # the catalog may record another checkout's path
        video_path = next((data_dir / "raw" / "videos").glob(f"{video_id}.*"))
    started = time.perf_counter()
    result = calibrate_render_check(
        video_path, plans, control.masks, control.attention, SalienceEditor(), out_root / video_id, attention_fn,
        calibration_frames=args.calibration_frames, keyframe_stride=args.stride, seed=0,
        thresholds=CheckThresholds(), measure_every=args.measure_every,
    )
    seconds = time.perf_counter() - started
    table = result.report.table
    rows = []
    for name, verdict in result.report.verdicts.set_index("variant")["passed"].items():
        group = table[table["variant"] == name].set_index("window")
        shares = {w: (float(group.loc[w, "share_achieved"]) if w in group.index else float("nan")) for w in WINDOWS}
        rows.append(
            {
                "video_id": video_id,
                "variant": name,
                "passed": bool(verdict),
                "shares": shares,
                "max_abs_vs_original": float(group["achieved_delta_vs_original"].abs().max()),
                "max_abs_vs_baseline": float(group["achieved_delta"].abs().max()),
                "failed": "; ".join(f"{w}: {r}" for w, r, p in zip(group.index, group["reason"], group["passed"]) if not p),
            }
        )
    return {
        "video_id": video_id,
        "seconds": seconds,
        "timings": result.timings,
        "calibration": [vars(p) for p in result.calibration],
        "strength_map": result.strength_map.to_dict() if result.strength_map else None,
        "rows": rows,
        "rows_passed": int(table["passed"].sum()),
        "rows_total": int(len(table)),
        "edit_ms_per_call": 1000 * result.render.timings["edit_s"] / max(1, result.render.edit_calls),
    }


def print_report(results: list[dict]) -> None:
    header = f"{'video':>19} {'variant':<13} {'verdict':<7} " + " ".join(f"{w:>7}" for w in WINDOWS) + f" {'|d|orig':>8} {'|d|base':>8}"
    print(header)
    print("-" * len(header))
    for res in results:
        for row in res["rows"]:
            shares = " ".join(f"{row['shares'][w]:>7.0%}" if np.isfinite(row["shares"][w]) else f"{'-':>7}" for w in WINDOWS)
            print(
                f"{row['video_id']:>19} {row['variant']:<13} {'PASS' if row['passed'] else 'FAIL':<7} {shares} "
                f"{row['max_abs_vs_original']:>8.4f} {row['max_abs_vs_baseline']:>8.4f}"
            )
        cal = ", ".join(f"{p['kind'][0]}{p['strength']:g}:{p['mean_log_ratio']:+.2f}" for p in res["calibration"])
        print(
            f"{'':>19} rows passed {res['rows_passed']}/{res['rows_total']}; {res['seconds']:.1f} s "
            f"(calibrate {res['timings'].get('calibrate_s', 0):.1f}, render {res['timings'].get('render_s', 0):.1f}, "
            f"check {res['timings'].get('check_s', 0):.1f}); edit {res['edit_ms_per_call']:.1f} ms/call"
        )
        print(f"{'':>19} calibration log(a'/a): {cal}")
    failed = [f"{r['video_id']}/{r['variant']}: {r['failed']}" for res in results for r in res["rows"] if not r["passed"]]
    print(f"\nvariants passed: {sum(r['passed'] for res in results for r in res['rows'])}/{sum(len(res['rows']) for res in results)}")
    for line in failed:
        print("  FAILED", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/demo3"))
    parser.add_argument("--videos", nargs="*", default=list(DEMO_VIDEOS))
    parser.add_argument("--keep", type=Path, default=None, help="render into this directory and keep it")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--calibration-frames", type=int, default=6)
    parser.add_argument("--measure-every", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "bench_manipulation.json")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    attention_fn = real_attention_fn()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_manip_") as tmp:
        out_root = args.keep or Path(tmp)
        for video_id in args.videos:
            results.append(run_video(args.data_dir, video_id, out_root, attention_fn, args))
            print(f"[{video_id}] done in {results[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    print_report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0 if all(r["passed"] for res in results for r in res["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
