"""Atomic file and directory writes: a reader sees the old complete output or the new one.

Every stage writes to a temporary sibling and renames it into place, so a run killed mid-write
never leaves a half-written file where a good one was, and re-running replaces outputs whole.
Temporary names carry the writer's process id (``.<name>.tmp-<pid>-<random>``), so what a killed
process left behind can be told apart from what a live one is writing and reclaimed
(:func:`reclaim_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "process_alive",
    "reclaim_temporaries",
]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    The temporary name keeps the target's suffix so libraries that choose a format by
    extension (PyAV, OpenCV, pandas) still work. On error the temporary file is removed and
    ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write to {target} produced no file at {tmp}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a whole directory in a temporary sibling, then swap it in for ``target``.

    The swap is two renames (old aside, new in); a crash between them leaves the old
    directory under a ``.old-*`` name and no partial ``target``. The directory gets the mode a
    plain ``mkdir`` would (0777 less the umask), not ``mkdtemp``'s private 0700.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def current_umask() -> int:
    """The process umask, read from ``/proc/self/status`` (setting and restoring it races threads)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: the classic set-and-restore
    os.umask(mask)
    return mask


#: ``.<name>.tmp-<pid>-<random>[suffix]`` / ``.<name>.old-<pid>-<random>``, as written above.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^.]+(?P<suffix>\.[^.]*)?$")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def reclaim_temporaries(directory: str | os.PathLike[str], depth: int = 1) -> list[Path]:
    """Remove what killed writers left in ``directory`` (and ``depth - 1`` levels below).

    A ``.tmp-<pid>-*`` file or folder whose process is gone is deleted; a ``.old-<pid>-*`` folder
    (a crash between the two renames of :func:`atomic_directory`) is renamed back when its target
    is missing, else deleted. Leftovers of live processes are never touched. Returns the paths
    handled. Assumes the writers ran on this machine (process ids are per machine).
    """
    handled: list[Path] = []
    directory = Path(directory)
    if depth < 1 or not directory.is_dir():
        return handled
    for entry in sorted(directory.iterdir()):
        match = _LEFTOVER.match(entry.name)
        if match is None:
            if depth > 1 and entry.is_dir() and not entry.is_symlink():
                handled.extend(reclaim_temporaries(entry, depth - 1))
            continue
        if process_alive(int(match["pid"])):
            continue
        if match["kind"] == "old":
            target = entry.with_name(match["name"])
            if not target.exists():
                os.replace(entry, target)
                handled.append(entry)
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        handled.append(entry)
    return handled
