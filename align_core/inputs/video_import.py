"""Bring video files into the data directory under valid ids (one id = one partition)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from align_core.inputs.ids import InvalidVideoIdError, validate_video_id, video_id_from_filename
from align_core.io.atomic import atomic_path
from align_core.io.layout import DataLayout
from align_core.io.video_io import is_video_file

__all__ = [
    "import_videos",
    "video_ids_in_inbox",
    "videos_in_folder",
]


@dataclass(frozen=True)
class RegisteredVideo:
    video_id: str
    path: Path
    source: Path
    copied: bool


def videos_in_folder(folder: str | Path) -> list[Path]:
    """Video files directly inside ``folder`` (other files are ignored), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a directory")
    return sorted(p for p in folder.iterdir() if is_video_file(p))


def video_ids_in_inbox(layout: DataLayout) -> tuple[list[str], list[str]]:
    """(valid ids, messages about skipped files) for the videos in ``raw/videos``."""
    ids, skipped = [], []
    if not layout.videos_dir.is_dir():
        return ids, skipped
    for path in layout.videos_dir.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        if not is_video_file(path):
            skipped.append(f"{path.name}: not a video file (suffix {path.suffix or 'none'})")
            continue
        try:
            ids.append(validate_video_id(path.stem, where=f"file {path.name}"))
        except InvalidVideoIdError as exc:
            skipped.append(str(exc))
    return sorted(set(ids)), skipped


def import_videos(folder: str | Path, layout: DataLayout, sources: list[Path] | None = None) -> list[RegisteredVideo]:
    """Copy every video in ``folder`` into ``raw/videos/<id><suffix>`` (atomic, idempotent).

    Ids come from file stems with unsafe characters replaced; an unchanged file already in
    place is not copied again, a changed one replaces it (an updated upload). Two files that
    would share an id are refused, naming both, before anything is copied.
    """
    layout.videos_dir.mkdir(parents=True, exist_ok=True)
    sources = videos_in_folder(folder) if sources is None else sources
    claimed: dict[str, Path] = {}
    for source in sources:
        video_id = video_id_from_filename(source.stem)
        if video_id in claimed:
            raise ValueError(
                f"{claimed[video_id].name} and {source.name} in {folder} both become video id {video_id!r}; rename one"
            )
        claimed[video_id] = source
        others = [
            p
            for p in layout.videos_dir.glob(f"{video_id}.*")
            if p.suffix.lower() != source.suffix.lower() and not p.name.startswith(".")
        ]
        if others:
            raise ValueError(
                f"{source.name} would become video id {video_id!r}, which {others[0]} already holds; rename it"
            )
    registered = []
    for source in sources:
        video_id = video_id_from_filename(source.stem)
        target = layout.videos_dir / f"{video_id}{source.suffix.lower()}"
        same = (
            target.exists()
            and target.stat().st_size == source.stat().st_size
            and target.read_bytes() == source.read_bytes()
        )
        if not same:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        registered.append(RegisteredVideo(video_id, target, source, copied=not same))
    return registered
