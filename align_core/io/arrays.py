"""Compact, atomic storage for per-frame stacks: binary masks as bits, maps as uint8.

A binary mask stack ``(T, H, W)`` is bit-packed (8 pixels per byte) and deflated; product masks
are mostly empty, so a 10-second 288x512 stack takes a few kilobytes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from align_core.io.atomic import atomic_write_bytes

__all__ = [
    "load_mask_stack",
    "pack_masks",
    "save_mask_stack",
    "save_npz_atomic",
    "unpack_masks",
]


def save_npz_atomic(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def pack_masks(masks: np.ndarray) -> dict[str, np.ndarray]:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"mask stack must be (T, H, W), got {masks.shape}")
    return {"bits": np.packbits(masks.astype(bool).reshape(-1)), "shape": np.asarray(masks.shape, dtype=np.int64)}


def unpack_masks(bits: np.ndarray, shape: np.ndarray) -> np.ndarray:
    shape = tuple(int(v) for v in shape)
    count = int(np.prod(shape))
    return np.unpackbits(bits, count=count).reshape(shape).astype(bool)


def save_mask_stack(path: str | os.PathLike[str], masks: np.ndarray) -> Path:
    """Write a boolean ``(T, H, W)`` mask stack bit-packed in a compressed npz, atomically."""
    return save_npz_atomic(path, **pack_masks(masks))


def load_mask_stack(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a stack written by :func:`save_mask_stack` as ``bool (T, H, W)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return unpack_masks(data["bits"], data["shape"])
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"mask file {path}: cannot be read as a packed mask stack ({exc})") from exc
