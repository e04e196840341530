"""What a person looks at after a render: the side-by-side comparison grid and the contact sheet.

The comparison video tiles the original and every variant (4 columns; tiles at half size, at
most ``comparison_max_side`` px long: a 1080x1920 grid of 8 half-size tiles would be a 2160x1920
video, as costly to encode as two variants). The contact sheet has a few frames per variant
(rows) with labels. Both outline the product (green) and protected regions (magenta).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from align_core.io.visuals import outline_regions

__all__ = [
    "COMPARISON_COLUMNS",
    "RenderPreview",
    "captioned",
    "even_size",
    "label_image",
    "tile_grid",
]

COMPARISON_COLUMNS = 4


def label_image(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``image`` with ``text`` in white on a black box at its top left."""
    out = image.copy()
    scale = max(0.35, min(out.shape[1], out.shape[0]) / 400)
    thickness = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (tw + 6, th + base + 6), (0, 0, 0), thickness=-1)
    cv2.putText(out, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def captioned(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` under a black strip carrying ``text``: the label never covers the ad's own top caption."""
    strip = label_image(np.zeros((max(14, image.shape[0] // 14), image.shape[1], 3), np.uint8), text)
    return np.concatenate([strip, image], axis=0)


def tile_grid(tiles: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Equal-sized ``tiles`` row by row, ``columns`` per row, on black."""
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    canvas = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = tile
    return canvas


def even_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``(width, height)`` scaled and rounded to even numbers (yuv420p), at least 2."""
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class _OutlinedFrame:
    """One frame's pictures at preview sizes, outlined; the masks are resized once per size."""

    def __init__(self, product: np.ndarray, protected: np.ndarray | None):
        self._product, self._protected = product, protected
        self._outlines: dict[tuple[int, int], tuple[np.ndarray | None, np.ndarray | None]] = {}

    def shown(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if size not in self._outlines:
            self._outlines[size] = (self._small(self._product, size), self._small(self._protected, size))
        return outline_regions(cv2.resize(image, size, interpolation=cv2.INTER_AREA), *self._outlines[size])

    @staticmethod
    def _small(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
        return None if mask is None else cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)


class RenderPreview:
    """Builds the comparison grid frame by frame and collects the contact sheet's thumbnails."""

    def __init__(
        self,
        names: Sequence[str],
        size: tuple[int, int],
        frame_count: int,
        contact_frames: int,
        comparison_scale: float,
        comparison_max_side: int,
    ):
        height, width = size
        self.names = list(names)
        self.contact_at: list[int] = sorted(
            set(np.linspace(0, frame_count - 1, num=max(1, contact_frames)).round().astype(int).tolist())
        )
        self._thumb_size = even_size(width, height, min(1.0, 180 / max(width, height)))
        self._tile_size = even_size(width, height, min(comparison_scale, comparison_max_side / max(width, height)))
        self.thumbs: dict[str, list[np.ndarray]] = {n: [] for n in ["original", *self.names]}

    def comparison_frame(
        self,
        frame_index: int,
        original: np.ndarray,
        frames_out: Mapping[str, np.ndarray],
        product: np.ndarray,
        protected: np.ndarray | None,
    ) -> np.ndarray:
        """The grid for one frame (original first); keeps thumbnails at the contact sheet's frames."""
        outlined = _OutlinedFrame(product, protected)
        tiles = [label_image(outlined.shown(original, self._tile_size), "original")]
        tiles += [label_image(outlined.shown(frames_out[name], self._tile_size), name) for name in self.names]
        grid = tile_grid(tiles, columns=COMPARISON_COLUMNS)
        if frame_index in self.contact_at:
            self.thumbs["original"].append(outlined.shown(original, self._thumb_size))
            for name in self.names:
                self.thumbs[name].append(outlined.shown(frames_out[name], self._thumb_size))
        return grid

    def write_contact_sheet(self, path: Path, video_path: Path) -> None:
        """The thumbnails, one labelled row per variant, as a PNG."""
        sheet_rows = []
        for row_name, row in self.thumbs.items():
            labelled = [captioned(t, f"{row_name} f{self.contact_at[i]}") for i, t in enumerate(row)]
            sheet_rows.append(np.concatenate(labelled, axis=1))
        if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(sheet_rows, axis=0), cv2.COLOR_RGB2BGR)):
            raise OSError(f"video {video_path}: could not write contact sheet {path}")
