"""``align-import FOLDER``: copy a folder of videos into the data directory and register their partitions.

Ids come from the file names (unsafe characters replaced; two files that would share an id are
refused). With a running ``dagster dev`` the new partitions then flow through the graph by
their automation conditions; without one, ``align-backfill`` runs them here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from align_core.layout import DataLayout
from align_core.registry import import_videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="align-import", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data-dir", default=os.environ.get("ALIGN_DATA_DIR", "data"))
    args = parser.parse_args(argv)
    layout = DataLayout(Path(args.data_dir)).ensure()
    try:
        registered = import_videos(args.folder, layout)
    except (NotADirectoryError, ValueError) as exc:
        print(f"align-import: {exc}", file=sys.stderr)
        return 2
    from dagster import DagsterInstance

    from align_assets.runner import prepare_instance
    from align_assets.partitions import VIDEO_PARTITIONS_NAME

    prepare_instance(layout.dagster_home)
    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
        new = [r.video_id for r in registered if r.video_id not in known]
        if new:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, new)
    for entry in registered:
        state = "copied" if entry.copied else "unchanged"
        print(f"{entry.video_id:<40} {state:<9} {entry.source}")
    print(f"{len(registered)} videos, {len(new)} new partitions in {layout.dagster_home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
