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
    """(valid ids, one message per file left out with its reason) for the videos in ``raw/videos``.

    The id is the file's stem exactly, so the file can be found from the id again: a stem that
    is not a valid id as it stands (spaces around it, dots) is left out, and so are two files
    with one stem (``dup.mp4`` and ``dup.mkv``), naming both, rather than one picked silently.
    """
    by_stem: dict[str, list[Path]] = {}
    skipped: list[str] = []
    if not layout.videos_dir.is_dir():
        return [], skipped
    for path in sorted(layout.videos_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not is_video_file(path):
            skipped.append(f"{path.name}: not a video file (suffix {path.suffix or 'none'})")
            continue
        try:
            video_id = validate_video_id(path.stem, where=f"file {path.name}")
        except InvalidVideoIdError as exc:
            skipped.append(str(exc))
            continue
        if video_id != path.stem:
            skipped.append(
                f"{path.name!r}: the name has spaces around {video_id!r}, which a video id cannot keep;"
                f" rename it to {video_id + path.suffix!r}"
            )
            continue
        by_stem.setdefault(video_id, []).append(path)
    ids = []
    for video_id, paths in sorted(by_stem.items()):
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            skipped.append(f"{names}: both would be video id {video_id!r}; remove or rename all but one")
        else:
            ids.append(video_id)
    return ids, skipped


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
        # An earlier import of IMG_1.MOV may have kept its case: update that file, not a second one.
        same_kind = [p for p in layout.video_files(video_id) if p.suffix.lower() == source.suffix.lower()]
        target = same_kind[0] if same_kind else layout.videos_dir / f"{video_id}{source.suffix.lower()}"
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
