"""Durable, idempotent session files: one append-only JSON-lines file per participant session.

``sessions/<session_id>.jsonl`` gets one line per accepted record; the line is written with
``O_APPEND`` and fsync'ed before :meth:`SessionStore.append` returns, so an acknowledged batch
survives a killed server. Each record carries the client's ``batch_id``; a batch already in the
file is answered as a duplicate and never written twice (the ids are read back from the file when
a session is first touched after a restart). A line cut short by a kill mid-write was never
acknowledged: it is cut off before the next append. One lock per session file serialises its
appends (the server is one process). Crowd ids are kept only as ``sha256(salt + value)``; the
session token is ``HMAC(secret, session_id)``, so the server keeps no token table.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CROWD_KEYS",
    "HEX_ID",
    "SessionOpening",
    "SessionStore",
    "UnknownSession",
    "hash_crowd_ids",
    "session_token",
]

HEX_ID = re.compile(r"^[0-9a-f]{32}$")
#: URL parameters of Prolific and MTurk that identify a participant (stored hashed only).
CROWD_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId")


class UnknownSession(LookupError):
    """No file for this session: never started, or withdrawn (its file deleted)."""


def session_token(secret: str, session_id: str) -> str:
    """The session's write token: HMAC-SHA256 of its id under the server secret (hex)."""
    return hmac.new(secret.encode(), session_id.encode(), hashlib.sha256).hexdigest()


def hash_crowd_ids(salt: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The known crowd parameters present in ``params``, each as ``sha256(salt + value)``."""
    return {
        key: hashlib.sha256((salt + str(params[key])).encode()).hexdigest()
        for key in CROWD_KEYS
        if params.get(key) not in (None, "")
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class SessionStore:
    """The ``sessions/`` folder of one study."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.locks: dict[str, threading.Lock] = {}
        self.batches: dict[str, set[str]] = {}
        self.guard = threading.Lock()
        self._openings: dict[str, SessionOpening] = {}

    def path(self, session_id: str) -> Path:
        if not HEX_ID.match(session_id):
            raise ValueError(f"session id {session_id!r} is not 32 lowercase hex characters")
        return self.folder / f"{session_id}.jsonl"

    def lock(self, session_id: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(session_id, threading.Lock())

    def session_ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.jsonl") if HEX_ID.match(p.stem))

    def openings(self) -> dict[str, SessionOpening]:
        """Each retained session's list and start batch, by id: a file's first line is read once, and a
        session is forgotten when its file goes (a withdrawal, by the server or the command line)."""
        present = set(self.session_ids())
        with self.guard:
            for gone in set(self._openings) - present:
                del self._openings[gone]
            for session_id in sorted(present - set(self._openings)):
                opening = _opening(self.path(session_id))
                if opening is not None:
                    self._openings[session_id] = opening
            return dict(self._openings)

    def create(self, session_id: str, record: dict[str, Any]) -> None:
        """Start a session's file with its ``session`` record (the id must be new)."""
        path = self.path(session_id)
        with self.lock(session_id):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            try:
                os.write(descriptor, _line(record))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            self.batches[session_id] = {record["batch_id"]}
        _fsync_dir(self.folder)

    def append(self, session_id: str, record: dict[str, Any]) -> bool:
        """Append ``record`` durably; False (nothing written) when its ``batch_id`` is already stored."""
        path = self.path(session_id)
        with self.lock(session_id):
            if not path.exists():
                raise UnknownSession(f"session {session_id} has no file (never started, or withdrawn)")
            seen = self.batches.get(session_id)
            if seen is None:
                seen = self.batches[session_id] = _stored_batch_ids(path)
            if record["batch_id"] in seen:
                return False
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(descriptor, _line(record))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            seen.add(record["batch_id"])
            return True

    def records(self, session_id: str) -> list[dict[str, Any]]:
        """The session's complete lines (a torn last line is not a record)."""
        path = self.path(session_id)
        if not path.exists():
            raise UnknownSession(f"session {session_id} has no file")
        return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line.strip()]

    def withdraw(self, session_id: str) -> bool:
        """Delete the session's file (True when there was one); later posts to it get 404."""
        path = self.path(session_id)
        with self.lock(session_id):
            self.batches.pop(session_id, None)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        _fsync_dir(self.folder)
        return True


@dataclass(frozen=True)
class SessionOpening:
    """What a session's first (``session``) record says about its start."""

    list_index: int
    batch_id: str


def _opening(path: Path) -> SessionOpening | None:
    """The session record on ``path``'s first line; None when that line is torn or not a session record."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    if not first.endswith(b"\n"):
        return None
    try:
        record = json.loads(first)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") != "session" or not isinstance(record.get("list_index"), int):
        return None
    return SessionOpening(list_index=record["list_index"], batch_id=str(record["batch_id"]))


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def _stored_batch_ids(path: Path) -> set[str]:
    """Batch ids of the file's complete lines; a torn last line (a kill mid-write) is cut off."""
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(complete)
            os.fsync(handle.fileno())
    ids: set[str] = set()
    for line in data[:complete].split(b"\n"):
        if line.strip():
            ids.add(json.loads(line)["batch_id"])
    return ids


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
