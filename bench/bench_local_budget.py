"""Issue 24: every budget limit of every rendered variant of a backfilled data directory, with eligibility.

For each video: the rendered variants are measured against the rendered baseline on every
``every``-th frame (the platform's own :func:`~align_core.measurement.manipulation.measure_rendered`,
full resolution, outside product and protected regions) and the table prints per variant the mean
of the mean figures, the worst local and product figures, the frames over any limit and the
``variants`` table's eligibility and reason. Usage (after ``align-import`` and ``align-backfill``)::

    .venv/bin/python bench/bench_local_budget.py DATA_DIR [VIDEO_ID ...] [--every 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

__all__ = ["budget_table", "main"]


def budget_table(data_dir: Path, video_id: str, every: int) -> pd.DataFrame:
    """Per variant: mean SSIM / CIEDE2000, worst local and product figures, frames over budget."""
    from align_core.io.layout import DataLayout
    from align_core.measurement.manipulation import measure_rendered
    from align_core.measurement.perceptual_budget import PerceptualBudget
    from align_core.perception.control import load_control_tensors
    from align_core.stages.variants import variant_video_paths
    from align_core.stimuli.plans import load_variant_plans

    layout = DataLayout(data_dir)
    plans = load_variant_plans(layout.artifact("variant_plans", "plans", video_id))
    masks = load_control_tensors(layout.artifact("control_tensors", "control", video_id)).masks
    paths = variant_video_paths(layout, video_id, plans)
    source = next(p for p in (layout.root / "raw" / "videos").iterdir() if p.stem == video_id)
    frames = list(range(0, len(masks), every))
    _original, _curves, rows = measure_rendered(source, paths, plans.baseline_name(), masks, {}, budget_frames=frames)
    rows["over"] = PerceptualBudget().over(rows)
    table = rows.groupby("variant").agg(
        mean_ssim=("ssim", "mean"),
        mean_delta_e=("delta_e", "mean"),
        max_share_over_10=("visible_share", "max"),
        min_p2_patch_ssim=("patch_ssim", "min"),
        min_sharpness=("sharpness", "min"),
        min_p2_patch_sharpness=("patch_sharpness", "min"),
        min_product_ssim=("product_ssim", "min"),
        min_product_contrast=("product_contrast", "min"),
        min_product_chroma=("product_chroma", "min"),
        frames=("frame", "count"),
        frames_over=("over", "sum"),
    )
    return table.reset_index()


def eligibility(data_dir: Path, video_id: str) -> pd.DataFrame:
    """The ``variants`` table's eligibility and reason for one video (empty when not built yet)."""
    import duckdb

    from align_core.io.layout import DataLayout

    layout = DataLayout(data_dir)
    database = layout.warehouse_path
    path = layout.artifact_dir("variant_quality", video_id) / "eligibility.parquet"
    if path.exists():  # the per-video table variant_quality wrote (the warehouse copies it)
        return pd.read_parquet(path)[["variant", "eligible", "exclusion_reason"]]
    if not Path(database).exists():
        return pd.DataFrame(columns=["variant", "eligible", "exclusion_reason"])
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(
            "SELECT variant, eligible, exclusion_reason FROM variants WHERE video_id = ?", [video_id]
        ).df()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("videos", nargs="*")
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    videos = args.videos or sorted(p.stem for p in (args.data_dir / "raw" / "videos").iterdir())
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 160)
    for video_id in videos:
        if not (args.data_dir / "artifacts" / "variant_plans" / video_id / "plans.json").exists():
            print(f"\n## {video_id}\n\nno variant plans (not edited: screened keyword or skipped)")
            continue
        table = budget_table(args.data_dir, video_id, args.every).merge(
            eligibility(args.data_dir, video_id), on="variant", how="left"
        )
        print(f"\n## {video_id}\n")
        print(table.drop(columns=["exclusion_reason"]).to_markdown(index=False, floatfmt=".3f"))
        for row in table.itertuples():
            if isinstance(row.exclusion_reason, str):
                print(f"- {row.variant}: {row.exclusion_reason}")


if __name__ == "__main__":
    main()
