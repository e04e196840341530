"""``align-import FOLDER``: copy a folder of videos into the data directory and register their partitions.

Ids come from the file names (unsafe characters replaced; two files that would share an id are
refused). With a running ``dagster dev`` the new partitions then flow through the graph by
their automation conditions; without one, ``align-backfill`` runs them here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from align_core.inputs.video_import import import_videos, videos_in_folder
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoError, is_video_file, probe_video
from align_core.settings import add_data_dir_argument

__all__ = [
    "main",
]


def screen_folder(folder: Path) -> tuple[list[Path], list[str]]:
    """(video files worth importing, one line per file left out with its reason).

    Every file in the folder is accounted for: hidden files, files that are not videos by their
    suffix, and files whose bytes are not a readable video (empty, an image renamed .mp4,
    truncated) are listed, never silently dropped and never copied.
    """
    keep, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            skipped.append(f"{path.name}: a folder (only files directly inside {folder} are imported)")
        elif path.name.startswith("."):
            skipped.append(f"{path.name}: hidden file (name starts with '.')")
        elif not is_video_file(path):
            skipped.append(f"{path.name}: not a video file (suffix {path.suffix or 'none'})")
        else:
            try:
                probe_video(path)
            except VideoError as exc:
                skipped.append(f"{path.name}: {exc.reason}")
                continue
            keep.append(path)
    return keep, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="align-import", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    add_data_dir_argument(parser)
    args = parser.parse_args(argv)
    layout = DataLayout(Path(args.data_dir)).ensure()
    try:
        videos_in_folder(args.folder)  # says so when it is not a folder
        sources, skipped = screen_folder(args.folder)
        registered = import_videos(args.folder, layout, sources)
    except (NotADirectoryError, ValueError) as exc:
        print(f"align-import: {exc}", file=sys.stderr)
        return 2
    for message in skipped:
        print(f"align-import: skipped {message}", file=sys.stderr)
    from dagster import DagsterInstance

    from align_assets.partitions import VIDEO_PARTITIONS_NAME
    from align_assets.runner import prepare_instance, quiet_dagster_warnings

    quiet_dagster_warnings()
    prepare_instance(layout.dagster_home)
    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(VIDEO_PARTITIONS_NAME))
        new = [r.video_id for r in registered if r.video_id not in known]
        if new:
            instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, new)
    for entry in registered:
        state = "copied" if entry.copied else "unchanged"
        print(f"{entry.video_id:<40} {state:<9} {entry.source}")
    print(
        f"{len(registered)} videos, {len(new)} new partitions in {layout.dagster_home}"
        + (f"; {len(skipped)} file(s) skipped (listed above)" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
