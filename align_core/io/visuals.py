"""Pictures a researcher looks at: heatmap overlays with mask outlines, and curves over time.

Used for Dagster metadata and usable from notebooks. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from align_core.io.atomic import atomic_write_bytes

__all__ = [
    "curves_plot",
    "outline_regions",
    "overlay",
    "save_png",
    "tile",
]


def overlay(
    frame: np.ndarray, attention: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """Frame blended with a JET heatmap of ``attention`` and the mask's outline in white."""
    heat = cv2.applyColorMap(np.clip(attention * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(frame, 1 - alpha, heat, alpha, 0)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 2)
    return out


def tile(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, height: int = 240) -> np.ndarray:
    """Images resized to one height, side by side, each with an optional label."""
    tiles = []
    for index, image in enumerate(images):
        scale = height / image.shape[0]
        resized = cv2.resize(image, (max(1, int(image.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        if labels is not None:
            cv2.rectangle(resized, (0, 0), (resized.shape[1], 18), (0, 0, 0), -1)
            cv2.putText(
                resized, labels[index], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA
            )
        tiles.append(resized)
        tiles.append(np.full((height, 4, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode PNG for {path}")
    return atomic_write_bytes(path, encoded.tobytes())


def curves_plot(
    path: str | Path,
    times: np.ndarray,
    curves: Mapping[str, np.ndarray],
    *,
    title: str,
    ylabel: str,
    boundaries: Sequence[float] = (),
    styles: Mapping[str, str] | None = None,
) -> Path:
    """Line plot of several curves over time, with vertical lines at scene boundaries."""
    plt = _headless_pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=100)
    for name, values in curves.items():
        ax.plot(times, values, (styles or {}).get(name, "-"), label=name, linewidth=1.4)
    for boundary in boundaries:
        ax.axvline(boundary, color="0.7", linewidth=0.8, linestyle=":")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, ncol=min(4, len(curves)), loc="upper right")
    ax.grid(alpha=0.25)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


PRODUCT_OUTLINE_RGB = (0, 255, 0)
PROTECT_OUTLINE_RGB = (255, 0, 255)


def outline_regions(
    image: np.ndarray,
    product: np.ndarray | None = None,
    protect: np.ndarray | None = None,
    thickness: int = 1,
) -> np.ndarray:
    """A copy of ``image`` with the product mask outlined in green and protected regions in magenta.

    Masks may be at any resolution: they are resized (nearest) to the image first, so outlines
    can be drawn on thumbnails without scaling the frames back up.
    """
    out = image.copy()
    size = (image.shape[1], image.shape[0])
    for mask, colour in ((protect, PROTECT_OUTLINE_RGB), (product, PRODUCT_OUTLINE_RGB)):
        if mask is None or not np.any(mask):
            continue
        small = np.asarray(mask, dtype=np.uint8)
        if small.shape != image.shape[:2]:
            small = cv2.resize(small, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, thickness, cv2.LINE_AA)
    return out


def _headless_pyplot():
    """pyplot on the Agg backend, imported on first use: most processes that import this module
    (every Dagster step's worker) never draw a curve, and matplotlib costs half a second to load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
