"""Benchmark: the analysis over 10 million impressions, aggregated in DuckDB, vs the naive fit.

Generates results at the export grain (video x variant x day x segment) straight into a DuckDB
file, then runs in separate processes (so each peak RSS is its own):

* ``aggregated``: ``analysis.report.compute_tables`` (DuckDB sums -> cluster-robust lifts,
  interaction GLMs, Cochran's Q, timing, dose-response, SRM) and the full ``build_report``
  (plus HTML, plots and the table writes);
* ``naive``: what one would do without sufficient statistics: expand a sample of about
  1 million impressions into one row each and fit the same binomial interaction GLM
  (clustered by video) on them; the time and memory for 10 million are extrapolated linearly
  (a lower bound: IRLS cost is linear in rows, and 10M rows x 35 columns of float64 design
  matrix alone is 2.8 GB).

Usage: ``python bench/bench_analysis.py [--impressions 10000000] [--workdir /tmp/bench]``.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INDUSTRIES = ("beauty", "fashion", "food", "tech", "home")


def _variant_cells(
    rng: np.random.Generator,
    variant: str,
    p_base: np.ndarray,
    lift: float,
    per_row: float,
    videos: pd.DataFrame,
    dates: np.ndarray,
    seg_names: np.ndarray,
) -> pd.DataFrame:
    """One arm's simulated export rows (video x day x segment), drawn from ``rng`` in a fixed order."""
    n_videos, days, segments = len(videos), len(dates), len(seg_names)
    p = np.clip(p_base * (1 + lift + rng.normal(0, 0.06, n_videos)), 1e-5, 0.5)
    n = rng.poisson(per_row, (n_videos, days, segments))
    clicks = rng.binomial(n, p[:, None, None])
    conv = rng.binomial(clicks, 0.05)
    wsum = np.round(n * 8.0 + rng.normal(0, 1, n.shape) * np.sqrt(np.maximum(n, 1)) * 6, 3).clip(0) * (n > 0)
    wsq = np.ceil((wsum**2 / np.maximum(n, 1) + np.maximum(n - 1, 0) * 36.0) * 1000) / 1000
    iv, idd, iseg = np.meshgrid(np.arange(n_videos), np.arange(days), np.arange(segments), indexing="ij")
    return pd.DataFrame(
        {
            "experiment_id": "bench-exp",
            "video_id": videos["video_id"].to_numpy()[iv.ravel()],
            "variant": variant,
            "date": dates[idd.ravel()],
            "segment": seg_names[iseg.ravel()],
            "impressions": n.ravel(),
            "clicks": clicks.ravel(),
            "conversions": conv.ravel(),
            "spend": n.ravel() * 0.006,
            "watch_time_s_sum": wsum.ravel(),
            "watch_time_s_sumsq": wsq.ravel(),
            "source_file": "bench",
        }
    )


def generate(
    db: Path, impressions: int, n_videos: int = 500, days: int = 14, segments: int = 12, seed: int = 0
) -> dict:
    """Write videos, ab_results (export grain), experiment_arms and manipulation_check."""
    import duckdb

    from align_core.experiments.ab_results import ensure_tables
    from align_core.experiments.experiments_table import record_experiment
    from align_core.stimuli.plans import DEFAULT_VARIANTS, variant_names
    from align_demo.ab_simulator import registry_lifts

    VARIANTS = variant_names(DEFAULT_VARIANTS)

    rng = np.random.default_rng(seed)
    cells = n_videos * len(VARIANTS) * days * segments
    per_row = impressions / cells
    videos = pd.DataFrame(
        {
            "video_id": [f"7{i:018d}" for i in range(n_videos)],
            "industry": [INDUSTRIES[i % len(INDUSTRIES)] for i in range(n_videos)],
        }
    )
    lifts = registry_lifts(DEFAULT_VARIANTS, "ctr")
    p_base = 1 / (1 + np.exp(-(np.log(0.02 / 0.98) + rng.normal(0, 0.35, n_videos))))
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    ensure_tables(con)
    con.register("v", videos)
    con.execute("CREATE TABLE videos AS SELECT * FROM v")
    dates = np.array([dt.date(2026, 11, 1) + dt.timedelta(days=d) for d in range(days)])
    seg_names = np.array(
        [f"age={a}|placement={p}" for a in ("18-24", "25-34", "35-44", "45+") for p in ("feed", "search", "story")][
            :segments
        ]
    )
    deltas = []
    for variant in VARIANTS:
        frame = _variant_cells(rng, variant, p_base, lifts[variant], per_row, videos, dates, seg_names)
        con.register("f", frame)
        con.execute("INSERT INTO ab_results BY NAME SELECT * FROM f")
        con.unregister("f")
        con.execute("INSERT INTO experiment_arms VALUES ('bench-exp', ?, ?)", [variant, 1 / len(VARIANTS)])
        if variant != "baseline":
            deltas.append(
                pd.DataFrame(
                    {
                        "video_id": videos["video_id"],
                        "variant": variant,
                        "window": "full",
                        "achieved_delta": rng.uniform(0, 0.4, n_videos),
                    }
                )
            )
    md = pd.concat(deltas, ignore_index=True)
    con.register("m", md)
    con.execute("CREATE TABLE manipulation_check AS SELECT * FROM m")
    record_experiment(con, "bench-exp", "bench", dt.date(2026, 11, 1), dates[-1])
    rows, total = con.execute("SELECT count(*), sum(impressions) FROM ab_results").fetchone()
    con.close()
    return {
        "export_rows": int(rows),
        "impressions": int(total),
        "videos": n_videos,
        "days": days,
        "segments": segments,
        "db_mb": round(db.stat().st_size / 2**20, 1),
    }


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_aggregated(db: Path, out: Path) -> dict:
    from align_core.io.warehouse import read_connection
    from analysis import queries
    from analysis.report import build_report, compute_tables

    start_rss = _peak_mb()
    t0 = time.perf_counter()
    with read_connection(db) as con:
        cells = queries.cell_totals(con)
    t_sql = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables, _, _ = compute_tables(db)
    t_compute = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_report(db, out)
    t_report = time.perf_counter() - t0
    return {
        "mode": "aggregated",
        "cells": len(cells),
        "duckdb_aggregation_s": round(t_sql, 3),
        "compute_tables_s": round(t_compute, 3),
        "build_report_s": round(t_report, 3),
        "rss_after_imports_mb": round(start_rss, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "lift_rows": len(tables["analysis_lift"]),
    }


def run_naive(db: Path, sample_impressions: int) -> dict:
    import duckdb
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    start_rss = _peak_mb()
    con = duckdb.connect(str(db), read_only=True)
    per_video = con.execute("SELECT sum(impressions) / count(DISTINCT video_id) FROM ab_results").fetchone()[0]
    n_videos = max(int(round(sample_impressions / per_video)), 10)
    # whole videos (clusters), every one of their rows, with the industry
    rows = con.execute(
        """
        WITH pick AS (SELECT video_id FROM videos ORDER BY video_id LIMIT ?)
        SELECT r.video_id, r.variant, v.industry, r.impressions, r.clicks
        FROM ab_results r JOIN pick USING (video_id) JOIN videos v USING (video_id)
    """,
        [n_videos],
    ).df()
    con.close()
    t0 = time.perf_counter()
    reps = rows["impressions"].to_numpy()
    data = pd.DataFrame(
        {
            "video_id": np.repeat(rows["video_id"].to_numpy(), reps),
            "variant": np.repeat(rows["variant"].to_numpy(), reps),
            "industry": np.repeat(rows["industry"].to_numpy(), reps),
        }
    )
    # within each export row: the first `clicks` impressions clicked
    offsets = np.arange(len(data)) - np.repeat(np.cumsum(reps) - reps, reps)
    data["click"] = (offsets < np.repeat(rows["clicks"].to_numpy(), reps)).astype(float)
    t_expand = time.perf_counter() - t0
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    groups = pd.factorize(data["video_id"])[0]
    with threadpool_limits(
        limits=1, user_api="blas"
    ):  # same BLAS setting as the aggregated run: compare methods, not threads
        res = smf.glm(
            "click ~ C(variant, Treatment('baseline')) * C(industry)", data=data, family=sm.families.Binomial()
        ).fit(cov_type="cluster", cov_kwds={"groups": groups})
    t_fit = time.perf_counter() - t0
    n = len(data)
    scale = 10_000_000 / n
    return {
        "mode": "naive",
        "impression_rows": n,
        "videos": n_videos,
        "expand_s": round(t_expand, 3),
        "glm_fit_s": round(t_fit, 3),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_after_imports_mb": round(start_rss, 1),
        "params": int(len(res.params)),
        "extrapolated_10M_s": round((t_expand + t_fit) * scale, 1),
        "extrapolated_10M_peak_rss_mb": round(start_rss + (_peak_mb() - start_rss) * scale, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=10_000_000)
    parser.add_argument("--naive-impressions", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_analysis"))
    parser.add_argument("--mode", choices=["all", "aggregated", "naive"], default="all")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / "bench.duckdb"
    if args.mode == "aggregated":
        print(json.dumps(run_aggregated(db, args.workdir / "report")))
        return
    if args.mode == "naive":
        print(json.dumps(run_naive(db, args.naive_impressions)))
        return
    summary: dict = {}
    if not args.skip_generate:
        t0 = time.perf_counter()
        summary["data"] = generate(db, args.impressions)
        summary["data"]["generate_s"] = round(time.perf_counter() - t0, 1)
    for mode in ("aggregated", "naive"):
        cmd = [
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--workdir",
            str(args.workdir),
            "--naive-impressions",
            str(args.naive_impressions),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        summary[mode] = json.loads(out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
