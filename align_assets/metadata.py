"""Metadata helpers: Dagster has no image metadata type, so images are embedded in markdown."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from align_core.stages import CheckOutcome

__all__ = [
    "check_result",
    "png_markdown",
    "table_markdown",
]


def png_markdown(path: str | Path, *, alt: str = "image", max_width: int = 640) -> MetadataValue:
    """Embed a PNG (downscaled to ``max_width``) as a data URI in markdown metadata."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return MetadataValue.md(f"*(image {path} could not be read)*")
    if image.shape[1] > max_width:
        scale = max_width / image.shape[1]
        image = cv2.resize(image, (max_width, max(1, int(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", image)
    data = base64.b64encode(encoded.tobytes()).decode("ascii")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{data})\n\n`{path}`")


def table_markdown(frame: pd.DataFrame, *, max_rows: int = 30, floatfmt: str = ".3f") -> MetadataValue:
    shown = frame.head(max_rows)
    text = shown.to_markdown(index=False, floatfmt=floatfmt) if len(shown) else "*(no rows)*"
    if len(frame) > max_rows:
        text += f"\n\n*... {len(frame) - max_rows} more rows*"
    return MetadataValue.md(text)


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    """An ``align_core`` check verdict as a Dagster asset check result (warn-only failures as WARN)."""
    return AssetCheckResult(
        check_name=outcome.name,
        passed=bool(outcome.passed),
        severity=AssetCheckSeverity.WARN if outcome.warn_only else AssetCheckSeverity.ERROR,
        metadata=outcome.metadata,
    )
