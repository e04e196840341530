"""Per-frame stores that hold a whole video compactly and decode one frame at a time.

A 60 s 1080x1920 ad at 30 fps has 1,800 frames of 2 million pixels: a dense boolean mask stack
is 3.7 GB and a dense float32 attention stack 15 GB. These classes keep the video's frames
compressed (masks) or as the few keyframes they are built from (attention), and give
``store[t]`` one frame at a time, so a stage's memory depends on the frame size, not on the
video's length.

Both behave like read-only ``(T, H, W)`` arrays for per-frame access: ``len``, ``shape``,
``ndim``, ``dtype``, ``store[t]`` (also negative ``t``), iteration, and ``np.asarray(store)``
(which builds the dense stack: meant for short videos and tests only).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "FrameStore",
    "LazyFrames",
    "MaskFrames",
]


class FrameStore(ABC):
    """Read-only ``(T, H, W)`` sequence decoded frame by frame, with a small cache of recent frames."""

    dtype: np.dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, int, int], cache_frames: int = 2):
        self._shape = tuple(int(v) for v in shape)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = cache_frames

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self._shape))

    def __len__(self) -> int:
        return self._shape[0]

    @abstractmethod
    def _decode(self, index: int) -> np.ndarray:
        """Frame ``index`` decoded from the store (each subclass's own layout)."""

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a fresh, writable array (decoded once, then served from a small cache)."""
        count = self._shape[0]
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(f"frame {index} outside [0, {count})")
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached.copy()
        value = self._decode(index)
        self._cache[index] = value
        if len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return value.copy()

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.frame(int(key))
        if isinstance(key, tuple) and key and isinstance(key[0], (int, np.integer)):
            return self.frame(int(key[0]))[key[1:]]
        if isinstance(key, slice):
            picks = range(*key.indices(len(self)))
            out = np.empty((len(picks), *self._shape[1:]), dtype=self.dtype)
            for row, index in enumerate(picks):
                out[row] = self.frame(index)
            return out
        raise TypeError(f"{type(self).__name__} supports frame indices and slices, not {key!r}")

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.frame(index)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = np.empty(self._shape, dtype=self.dtype)
        for index in range(len(self)):
            dense[index] = self.frame(index)
        return dense if dtype is None else dense.astype(dtype)


def _pack_frame(mask: np.ndarray) -> bytes:
    return zlib.compress(np.packbits(np.asarray(mask, dtype=bool).reshape(-1)).tobytes(), 6)


class MaskFrames(FrameStore):
    """Boolean masks of a video, each frame bit-packed and deflated (exact).

    A product mask (a few blobs) costs a few KB per 1080x1920 frame instead of 2 MB; an empty
    frame costs about 20 bytes. Build with :meth:`append` (streaming) or :meth:`from_array`;
    store with :meth:`to_arrays` / :meth:`from_arrays` (one ``uint8`` blob plus offsets).
    """

    dtype = np.dtype(bool)

    def __init__(self, height: int, width: int, blobs: list[bytes] | None = None, coverage: np.ndarray | None = None):
        self.height, self.width = int(height), int(width)
        self._blobs: list[bytes] = list(blobs or [])
        self._coverage: list[float] = [] if coverage is None else [float(c) for c in coverage]
        super().__init__((len(self._blobs), self.height, self.width))
        if coverage is None:
            self._coverage = [
                float(self._decode(t).mean()) if self.height * self.width else 0.0 for t in range(len(self._blobs))
            ]
        if len(self._coverage) != len(self._blobs):
            raise ValueError(f"{len(self._coverage)} coverage values for {len(self._blobs)} mask frames")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self._blobs), self.height, self.width)

    def __len__(self) -> int:
        return len(self._blobs)

    @classmethod
    def from_array(cls, masks: np.ndarray) -> MaskFrames:
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"mask stack must be (T, H, W), got {masks.shape}")
        store = cls(masks.shape[1], masks.shape[2])
        for mask in masks:
            store.append(mask)
        return store

    def append(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.height, self.width):
            raise ValueError(f"mask frame {len(self._blobs)} is {mask.shape}, the stack is {(self.height, self.width)}")
        self._blobs.append(_pack_frame(mask))
        self._coverage.append(float(mask.mean()) if mask.size else 0.0)
        self._shape = self.shape

    def _decode(self, index: int) -> np.ndarray:
        bits = np.frombuffer(zlib.decompress(self._blobs[index]), dtype=np.uint8)
        return np.unpackbits(bits, count=self.height * self.width).reshape(self.height, self.width).astype(bool)

    def coverage_per_frame(self) -> np.ndarray:
        """Fraction of each frame's pixels in the mask (float64 ``(T,)``), without decoding."""
        return np.asarray(self._coverage, dtype=np.float64)

    def any_per_frame(self) -> np.ndarray:
        return self.coverage_per_frame() > 0

    def any(self) -> bool:
        return bool(self.any_per_frame().any())

    def compressed_bytes(self) -> int:
        return sum(len(b) for b in self._blobs)

    def to_arrays(self, prefix: str = "mask") -> dict[str, np.ndarray]:
        offsets = np.zeros(len(self._blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in self._blobs], out=offsets[1:])
        return {
            f"{prefix}_frames_zlib": np.frombuffer(b"".join(self._blobs), dtype=np.uint8),
            f"{prefix}_offsets": offsets,
            f"{prefix}_coverage": self.coverage_per_frame(),
            f"{prefix}_frame_size": np.asarray((self.height, self.width), dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, data, prefix: str = "mask") -> MaskFrames:
        blob = np.asarray(data[f"{prefix}_frames_zlib"], dtype=np.uint8).tobytes()
        offsets = np.asarray(data[f"{prefix}_offsets"], dtype=np.int64)
        height, width = (int(v) for v in data[f"{prefix}_frame_size"])
        if (
            offsets.ndim != 1
            or offsets.size < 1
            or offsets[0] != 0
            or offsets[-1] != len(blob)
            or np.any(np.diff(offsets) < 0)
        ):
            raise ValueError(f"mask frame offsets do not fit the {len(blob)}-byte blob")
        blobs = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=False)]
        return cls(height, width, blobs, coverage=np.asarray(data[f"{prefix}_coverage"], dtype=np.float64))


class LazyFrames(FrameStore):
    """Any ``frame(t) -> (H, W)`` function presented as a read-only ``(T, H, W)`` stack."""

    def __init__(
        self, shape: tuple[int, int, int], decode: Callable[[int], np.ndarray], dtype=np.float32, cache_frames: int = 2
    ):
        super().__init__(shape, cache_frames)
        self._decode_fn = decode
        self.dtype = np.dtype(dtype)

    def _decode(self, index: int) -> np.ndarray:
        value = np.asarray(self._decode_fn(index), dtype=self.dtype)
        if value.shape != self._shape[1:]:
            raise ValueError(f"frame {index} decoded to {value.shape}, expected {self._shape[1:]}")
        return value
