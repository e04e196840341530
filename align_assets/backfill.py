"""``align-backfill``: choose video partitions by industry or by the date a video arrived, then run them.

Two ways to use the selection:

- ``--print-keys`` prints the keys comma-separated, to paste into the Dagster UI's partition
  selector (asset page -> Materialize -> partitions) or pass to ``dagster asset materialize
  --partition``; the UI launches them as a backfill with the daemon running.
- without it, the selected partitions run here through the same waves as ``make demo``
  (every per-video asset, then the tables, the checkpoint and the report), recorded in the
  instance under ``$DAGSTER_HOME``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from align_core.inputs.video_import import video_ids_in_inbox
from align_core.io.layout import DataLayout
from align_core.io.warehouse import read_connection, table_exists
from align_core.settings import add_data_dir_argument

__all__ = [
    "main",
    "select_partitions",
]


def select_partitions(
    layout: DataLayout,
    *,
    industries: list[str] | None = None,
    added_since: dt.date | None = None,
    added_until: dt.date | None = None,
) -> list[str]:
    """Video ids in ``raw/videos`` filtered by industry (from the ``videos`` table) and arrival date.

    The arrival date is the input file's modification time (when it was dropped in the inbox).
    Industry filtering needs the catalog tables; videos not catalogued yet have no industry.
    """
    ids, _ = video_ids_in_inbox(layout)
    if industries:
        wanted = {industry.casefold() for industry in industries}
        with read_connection(layout.warehouse_path) as con:
            if not table_exists(con, "videos"):
                raise ValueError(
                    f"{layout.warehouse_path} has no videos table yet: materialize video_catalog and videos first"
                )
            rows = con.execute("SELECT video_id, industry FROM videos").fetchall()
        by_industry = {video_id for video_id, industry in rows if industry and industry.casefold() in wanted}
        ids = [video_id for video_id in ids if video_id in by_industry]
    if added_since or added_until:
        kept = []
        for video_id in ids:
            arrived = dt.date.fromtimestamp(layout.video_path(video_id).stat().st_mtime)
            if (added_since is None or arrived >= added_since) and (added_until is None or arrived <= added_until):
                kept.append(video_id)
        ids = kept
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="align-backfill", description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--industry", action="append", help="keep videos of this industry (repeatable)")
    parser.add_argument("--added-since", type=dt.date.fromisoformat, help="YYYY-MM-DD, inclusive")
    parser.add_argument("--added-until", type=dt.date.fromisoformat, help="YYYY-MM-DD, inclusive")
    parser.add_argument("--print-keys", action="store_true", help="print the partition keys and stop")
    parser.add_argument(
        "--workers", type=int, default=1, help="videos materialized at once, each in its own worker process"
    )
    parser.add_argument(
        "--asset",
        action="append",
        dest="assets",
        metavar="NAME",
        help="materialize only this asset (repeatable; its upstream must be materialized already)",
    )
    args = parser.parse_args(argv)
    layout = DataLayout(Path(args.data_dir))
    try:
        keys = select_partitions(
            layout, industries=args.industry, added_since=args.added_since, added_until=args.added_until
        )
    except ValueError as exc:
        print(f"align-backfill: {exc}", file=sys.stderr)
        return 2
    if args.print_keys:
        for message in video_ids_in_inbox(layout)[1]:
            print(f"align-backfill: ignored file: {message}", file=sys.stderr)
        print(",".join(keys))
        return 0
    if not keys:
        print("align-backfill: no video matches the selection", file=sys.stderr)
        return 1
    from align_assets.runner import prepare_instance, run_command

    os.environ["ALIGN_DATA_DIR"] = str(layout.root)
    prepare_instance(layout.dagster_home)
    try:
        failures = run_command("align-backfill", layout, keys, assets=args.assets, workers=args.workers)
    except ValueError as exc:
        print(f"align-backfill: {exc}", file=sys.stderr)
        return 2
    for key, messages in failures.items():
        for message in messages:
            print(f"{key}: " + message.replace("\n", "\n    "), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
