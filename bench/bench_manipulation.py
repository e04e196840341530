"""Manipulation-check benchmark on the demo corpus with the platform's real attention scorer.

Usage::

    .venv/bin/python bench/bench_manipulation.py [--data-dir data] [--videos ID ...] [--keep DIR]

For each edited demo video (default: every video of the data dir with
``artifacts/variant_plans/<id>/plans.json``; skipped videos have none) the bench runs what the
``variant_videos`` and ``variant_quality`` assets run, through the same library function
(:func:`align_core.stimuli.editing.pipeline.calibrate_render_check`): the salience editor's strength map
calibrated on ``calibration_frames`` (6) keyframes with the demo profile's attention measure
(``AttentionMeasure`` of the ``feature_richness`` scorer), ``render_variants`` with stride 8 and
seed 0 into a temp directory, then ``verify_variants`` with the default :class:`CheckThresholds`
(min_share 0.25, tolerance 0.03) measuring alignment every 2nd frame under the calibrating scorer
and the independent models (``spectral_residual``, ``itti_koch``, ``image_signature``), and the
perceptual budget (SSIM >= 0.90, mean CIEDE2000 <= 6 vs the baseline variant outside the
product) on EVERY frame.

It reads the stored artifacts (catalog, control tensors, plans) from ``<data-dir>/artifacts`` and
never writes there. Printed: one row per (video, variant) with the verdict, the achieved share of
the planned change in each window that plans one (``e/m/l/all``), and for the baseline and placebo
the largest |alignment change| over the windows (vs original / vs the baseline variant); then the
status, the independent votes per window, the budget figures per variant (worst frame SSIM and mean
CIEDE2000, frames over budget, the placebo's magnitude relative to the matched boost, the share of
frames whose strength the budget capped) and a per-scorer table of target vs achieved change. With
``--ceiling`` each boost row is followed by the scorer's ceiling for it (:func:`boost_ceiling`).
Results
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

from align_core.components import ScorerChoice  # noqa: E402
from align_core.inputs.catalog import load_catalog  # noqa: E402
from align_core.io.layout import DataLayout  # noqa: E402
from align_core.io.video_io import iter_frames  # noqa: E402
from align_core.measurement.manipulation import CheckThresholds, manipulation_check, measure_alignment  # noqa: E402
from align_core.perception.attention import AttentionConfig, attention_map  # noqa: E402
from align_core.perception.attention.independent import SaliencyModelScorer, scorer_cards  # noqa: E402
from align_core.perception.attention.scorers import FeatureRichnessScorer  # noqa: E402
from align_core.perception.control import load_control_tensors  # noqa: E402
from align_core.stages.attention import AttentionMeasure  # noqa: E402
from align_core.stimuli.editing.pipeline import calibrate_render_check  # noqa: E402
from align_core.stimuli.editing.salience import SalienceEditor  # noqa: E402
from align_core.stimuli.plans import load_variant_plans  # noqa: E402

WINDOWS = ("early", "middle", "late", "all")


def edited_videos(data_dir: Path) -> list[str]:
    """Ids of the videos the demo edited: those whose variant plans were written."""
    return [p.parent.name for p in DataLayout(data_dir).artifact_files("variant_plans", "plans")]


def real_attention_fn() -> AttentionMeasure:
    """The demo profile's attention measure (the ``scorer`` resource's default): maps and check both use it."""
    return AttentionMeasure.from_choice(ScorerChoice(scorer="feature_richness"))


def boost_ceiling(video_path, plans, masks, every: int) -> dict[str, dict[str, float]]:
    """The most any boost can achieve under ``feature_richness``, per boost variant and window.

    Every pixel edit reaches the scorer only through its content map, so the best a boost can do
    is a content map that is the product mask and zero elsewhere (all visual richness on the
    product, none in the background; measured: uniform beats any peaked or rim-shaped content).
    Scoring each frame with that content map (same patches, centre prior, smoothing, gamma and
    normalisation) gives the ceiling; it is reported as the share of the planned change it would
    reach against the original (what the baseline variant approximates). A window whose ceiling
    is below ``min_share`` cannot pass with any edit that only moves image content.
    """
    scorer = FeatureRichnessScorer()
    procedure = AttentionConfig()
    mask_now: list[np.ndarray] = []
    scorer.content_map = lambda frame: mask_now[0]  # type: ignore[method-assign]

    def ceiling_fn(frame: np.ndarray) -> np.ndarray:
        return attention_map(frame, scorer, procedure)

    def frames_with_masks():
        for index, frame in enumerate(iter_frames(video_path)):
            mask_now[:] = [np.asarray(masks[min(index, len(masks) - 1)], dtype=np.float32)]
            yield frame

    ceiling = measure_alignment(frames_with_masks(), masks, ceiling_fn, every)
    original = measure_alignment(iter_frames(video_path), masks, real_attention_fn(), every)
    boosts = [name for name, plan in plans.plans.items() if plan.spec.kind == "boost"]
    achieved = {plans.baseline_name(): original}
    for name in boosts:  # the ceiling where the plan boosts, the original elsewhere (as the variant renders)
        planned = np.abs(plans[name].frame_target - plans.original_alignment) > CheckThresholds().eps
        achieved[name] = np.where(planned, ceiling, original)
    table = manipulation_check(plans, achieved, original, CheckThresholds()).table
    table = table[table["variant"].isin(boosts) & table["share_achieved"].notna()]
    return {
        name: dict(zip(group["window"], group["share_achieved"].astype(float), strict=False))
        for name, group in table.groupby("variant")
    }


def run_video(data_dir: Path, video_id: str, out_root: Path, attention_fn, args) -> dict:
    layout = DataLayout(data_dir)
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    plans = load_variant_plans(layout.artifact("variant_plans", "plans", video_id))
    control = load_control_tensors(layout.artifact("control_tensors", "control", video_id))
    video_path = catalog.probe.path
    if not Path(video_path).exists():  # the catalog may record another checkout's path
        video_path = next((data_dir / "raw" / "videos").glob(f"{video_id}.*"))
    started = time.perf_counter()
    independent = {name: SaliencyModelScorer(name) for name in args.independent}
    result = calibrate_render_check(
        video_path,
        plans,
        control.masks,
        control.attention,
        SalienceEditor(),
        out_root / video_id,
        attention_fn,
        calibration_frames=args.calibration_frames,
        keyframe_stride=args.stride,
        seed=0,
        thresholds=CheckThresholds(),
        measure_every=args.measure_every,
        independent=independent,
    )
    seconds = time.perf_counter() - started
    ceiling = boost_ceiling(video_path, plans, control.masks, args.measure_every) if args.ceiling else {}
    table = result.report.table
    verdicts = result.report.verdicts.set_index("variant")
    budget = result.report.budget.set_index("variant")
    limits = {name: entry.get("edit_limits", {}) for name, entry in result.render.manifest["variants"].items()}
    rows = []
    for name, verdict in verdicts["passed"].items():
        group = table[table["variant"] == name].set_index("window")
        shares = {w: (float(group.loc[w, "share_achieved"]) if w in group.index else float("nan")) for w in WINDOWS}
        edited = sum(v["frames_edited"] for v in limits.get(name, {}).values())
        capped = sum(v["frames_budget_capped"] for v in limits.get(name, {}).values())
        figures = budget.loc[name] if name in budget.index else None
        rows.append(
            {
                "video_id": video_id,
                "variant": name,
                "passed": bool(verdict),
                "status": str(verdicts.loc[name, "status"]),
                "votes": {
                    w: f"{int(group.loc[w, 'independent_agree'])}/{int(group.loc[w, 'independent_total'])}"
                    if w in group.index
                    else "-"
                    for w in WINDOWS
                },
                "budget": None
                if figures is None
                else {
                    "min_ssim": float(figures["min_ssim"]),
                    "max_delta_e": float(figures["max_delta_e"]),
                    "mean_delta_e": float(figures["mean_delta_e"]),
                    "frames": int(figures["frames"]),
                    "frames_over_budget": int(figures["frames_over_budget"]),
                    "placebo_magnitude_ratio": float(figures["placebo_magnitude_ratio"]),
                },
                "frames_edited": edited,
                "frames_budget_capped": capped,
                "shares": shares,
                "max_abs_vs_original": float(group["achieved_delta_vs_original"].abs().max()),
                "max_abs_vs_baseline": float(group["achieved_delta"].abs().max()),
                "ceiling": ceiling.get(name, {}),
                "failed": "; ".join(
                    f"{w}: {r}" for w, r, p in zip(group.index, group["reason"], group["passed"], strict=False) if not p
                ),
            }
        )
    return {
        "video_id": video_id,
        "seconds": seconds,
        "timings": result.timings,
        "calibration": [vars(p) for p in result.calibration],
        "strength_map": result.strength_map.to_dict() if result.strength_map else None,
        "rows": rows,
        "by_scorer": result.report.scorer_table.assign(
            scorer=lambda t: t["scorer"].where(t["scorer_role"] != "calibrating", "calibrating")
        )[["variant", "window", "scorer", "target_delta", "achieved_delta", "share_achieved", "agrees"]].to_dict(
            orient="records"
        ),
        "rows_passed": int(table["passed"].sum()),
        "rows_total": int(len(table)),
        "edit_ms_per_call": 1000 * result.render.timings["edit_s"] / max(1, result.render.edit_calls),
    }


def print_scorer_tables(results: list[dict]) -> None:
    """Per video: target vs achieved change (vs the baseline variant) under every scorer, planned windows only."""
    for res in results:
        by = {}
        for r in res["by_scorer"]:
            by.setdefault((r["variant"], r["window"]), {})[r["scorer"]] = r
        scorers = list(next(iter(by.values())).keys()) if by else []
        print(f"\n{res['video_id']}: target vs achieved change by scorer (planned windows; * = agrees / passes)")
        print(f"{'variant':<13} {'window':<7} {'target':>8} " + " ".join(f"{s[:17]:>18}" for s in scorers))
        for (variant, window), cells in by.items():
            first = next(iter(cells.values()))
            if abs(first["target_delta"]) <= 1e-6 and first["variant"] != "placebo":
                continue
            text = " ".join(f"{c['achieved_delta']:>+17.4f}{'*' if c['agrees'] else ' '}" for c in cells.values())
            print(f"{variant:<13} {window:<7} {first['target_delta']:>+8.4f} {text}")


def print_budget(results: list[dict]) -> None:
    print(
        f"\n{'video':>19} {'variant':<13} {'status':<12} {'votes e/m/l/all':<16} {'minSSIM':>8} {'maxdE':>6} {'meandE':>7} {'over':>5} {'capped':>9} {'placebo/boost':>13}"
    )
    for res in results:
        for row in res["rows"]:
            b = row["budget"]
            votes = "/".join(row["votes"][w].split("/")[0] if row["votes"][w] != "-" else "-" for w in WINDOWS)
            if b is None:
                print(f"{row['video_id']:>19} {row['variant']:<13} {row['status']:<12} {votes:<16} {'(reference)':>8}")
                continue
            ratio = f"{b['placebo_magnitude_ratio']:.2f}" if np.isfinite(b["placebo_magnitude_ratio"]) else "-"
            print(
                f"{row['video_id']:>19} {row['variant']:<13} {row['status']:<12} {votes:<16} {b['min_ssim']:>8.3f} {b['max_delta_e']:>6.2f} "
                f"{b['mean_delta_e']:>7.2f} {b['frames_over_budget']:>2}/{b['frames']:<3} {row['frames_budget_capped']:>4}/{row['frames_edited']:<4} {ratio:>13}"
            )


def print_cards() -> None:
    cards = scorer_cards()
    print(
        f"\nscorer cards (NUS Scene {cards.get('reported_on', '?')}, tuned on {cards.get('tuned_on', '?')}): NSS / CC, content only and with centre prior"
    )
    for name, card in cards.get("scorers", {}).items():
        print(
            f"  {name:18s} {card['content_only']['NSS']:.3f} / {card['content_only']['CC']:.3f}   "
            f"{card['with_centre_prior']['NSS']:.3f} / {card['with_centre_prior']['CC']:.3f} (centre {card['centre_weight']:g})"
        )


def print_report(results: list[dict]) -> None:
    header = (
        f"{'video':>19} {'variant':<13} {'verdict':<7} "
        + " ".join(f"{w:>7}" for w in WINDOWS)
        + f" {'|d|orig':>8} {'|d|base':>8}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        for row in res["rows"]:
            shares = " ".join(
                f"{row['shares'][w]:>7.0%}" if np.isfinite(row["shares"][w]) else f"{'-':>7}" for w in WINDOWS
            )
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
        for row in res["rows"]:
            if row["ceiling"]:
                cells = " ".join(f"{row['ceiling'][w]:>7.0%}" if w in row["ceiling"] else f"{'-':>7}" for w in WINDOWS)
                print(f"{'':>19} {row['variant']:<13} {'ceiling':<7} {cells}")
    print_budget(results)
    print_scorer_tables(results)
    print_cards()
    failed = [
        f"{r['video_id']}/{r['variant']} [{r['status']}]: {r['failed']}"
        for res in results
        for r in res["rows"]
        if not r["passed"]
    ]
    statuses = [r["status"] for res in results for r in res["rows"]]
    print(
        f"\nvariants passed: {statuses.count('passed')}/{len(statuses)}; unreachable {statuses.count('unreachable')}; failed {statuses.count('failed')}"
    )
    for line in failed:
        print("  FAILED", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="a data dir after make demo")
    parser.add_argument("--videos", nargs="*", default=None, help="default: every edited video of the data dir")
    parser.add_argument("--keep", type=Path, default=None, help="render into this directory and keep it")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--calibration-frames", type=int, default=6)
    parser.add_argument("--measure-every", type=int, default=2)
    parser.add_argument(
        "--ceiling", action="store_true", help="also report each boost's ceiling under feature_richness"
    )
    parser.add_argument("--independent", nargs="+", default=["spectral_residual", "itti_koch", "image_signature"])
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "bench_manipulation.json")
    args = parser.parse_args(argv)
    if not args.videos:
        args.videos = edited_videos(args.data_dir)
        if not args.videos:
            parser.error(f"no edited videos (artifacts/variant_plans/<id>/plans.json) under {args.data_dir}")
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
