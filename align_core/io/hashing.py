"""The platform's content digests: files, arrays, byte streams and weight directories.

Every digest here ends up in a lineage file, a manifest or a table ("which weights", "which
inputs"), so each keeps the exact byte layout it was introduced with: changing one would make
every stored lineage look stale.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "array_sha256",
    "bytes_sha256",
    "file_sha256",
    "files_sha256",
    "weights_head_tail_fingerprint",
]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (streamed by the standard library); every file hash uses this one."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def bytes_sha256(chunks: Iterable[bytes | np.ndarray]) -> str:
    """Hex sha256 of the concatenated ``chunks`` (an array contributes its C-order bytes)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.tobytes() if isinstance(chunk, np.ndarray) else chunk)
    return digest.hexdigest()


def array_sha256(array: Any) -> str:
    """Hex sha256 of an array's dtype, shape and bytes.

    A lazy per-frame store (:mod:`align_core.io.frames`, anything with ``frame(i)``) is hashed
    frame by frame to the same digest as its dense stack, without building the stack.
    """
    if not isinstance(array, np.ndarray) and hasattr(array, "frame"):
        digest = hashlib.sha256(f"{array.dtype.str}{tuple(array.shape)}".encode())
        for index in range(len(array)):
            digest.update(np.ascontiguousarray(array.frame(index), dtype=array.dtype).tobytes())
        return digest.hexdigest()
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    flat = array.reshape(-1) if array.size else array
    step = max(1, (64 << 20) // max(1, array.itemsize))
    for start in range(0, flat.size, step):
        digest.update(flat[start : start + step].tobytes())
    return digest.hexdigest()


def files_sha256(root: Path, files: Iterable[Path]) -> str:
    """Hex sha256 over each file's path relative to ``root`` followed by its bytes, in the given order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def weights_head_tail_fingerprint(model_dir: Path) -> dict[str, Any]:
    """Cheap identity of a weight directory: sha256 over config.json and, for every weight file,
    its name, size and first and last MiB (hashing a 14 GB checkpoint whole would take minutes)."""
    digest = hashlib.sha256()
    files: list[dict[str, Any]] = []
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for path in sorted(model_dir.iterdir()):
        if path.suffix not in (".safetensors", ".bin") or not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_CHUNK))
            if size > 2 << 20:
                handle.seek(-_CHUNK, os.SEEK_END)
                digest.update(handle.read(_CHUNK))
        files.append({"name": path.name, "bytes": size})
    return {"sha256_head_tail": digest.hexdigest(), "files": files}
