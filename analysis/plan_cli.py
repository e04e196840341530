"""``align-ab-plan EXPERIMENT.yaml``: register an experiment before it runs.

Registers the experiment's arms (its variant registry) and planned shares in the warehouse,
writes the pre-registered analysis plan (hashed, file + ``analysis_plans`` row) and, when the
variants have been rendered, the upload manifest with the ad names the export must carry.
Files go to ``<data-dir>/experiments/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align_core.experiments.config import ExperimentConfig, load_experiment_config
from align_core.experiments.upload_manifest import UploadManifest, prepare_upload_manifest, write_upload_manifest
from align_core.io.warehouse import read_connection, table_exists
from align_core.settings import add_data_dir_argument
from analysis.preregistration import register_plan

__all__ = [
    "main",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align-ab-plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="the experiment config (YAML)")
    add_data_dir_argument(parser)
    parser.add_argument(
        "--allow-after-results",
        action="store_true",
        help="file the plan even though results exist (reported as a deviation)",
    )
    parser.add_argument(
        "--include-ineligible",
        action="store_true",
        help="put variants that failed their checks into the upload manifest (explicit override)",
    )
    return parser


def _prepared_manifest(database: Path, config: ExperimentConfig, include_ineligible: bool) -> UploadManifest | None:
    """The upload manifest checked in full (every file re-hashed) before anything is registered."""
    if not database.exists():
        return None
    with read_connection(database) as con:
        rendered = table_exists(con, "variants")
    if not rendered:
        return None
    return prepare_upload_manifest(database, config.experiment_id, config.variants, include_ineligible)


def _print_manifest(manifest: UploadManifest) -> None:
    print(f"upload manifest: {len(manifest.rows)} ad(s) -> {manifest.path}")
    for note in manifest.notes:
        print(f"  note: {note}")
    for r in manifest.excluded.itertuples():
        print(f"  excluded {r.video_id} {r.variant}: {r.reason}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data = Path(args.data_dir)
    database = data / "warehouse.duckdb"
    out = data / "experiments"
    try:
        config = load_experiment_config(args.config)
        manifest = _prepared_manifest(database, config, args.include_ineligible)
        plan = register_plan(config, database, out, allow_after_results=args.allow_after_results)
    except (ValueError, FileNotFoundError) as exc:
        print(f"align-ab-plan: nothing was registered: {exc}", file=sys.stderr)
        return 1
    print(f"experiment {config.experiment_id}: {len(config.variants)} arms ({', '.join(config.variant_names)})")
    print(f"analysis plan sha256 {plan.sha256}\n  {plan.path}")
    mde = plan.plan["mde"]
    if "mde_relative" in mde:
        print(f"  MDE (relative CTR lift, {mde['power']:.0%} power, alpha {mde['alpha']}): {mde['mde_relative']:+.1%}")
    if manifest is None:
        print("no variants rendered yet: run align-ab-plan again after variant_videos for the upload manifest")
    else:
        _print_manifest(write_upload_manifest(manifest, database, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
