"""What a participant's browser may post: pydantic models, bounded and finite.

Every model forbids unknown fields and non-finite numbers; ids are 32 lowercase hex characters
(nothing path-like reaches a file name); lists and strings have upper bounds. Whether a record
fits its session (the trial's video and variant, media times within the clip) is checked by the
server against the session's plan.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "MAX_SAMPLES",
    "AttentionCheckRecord",
    "CompleteRecord",
    "CursorRecord",
    "PostedRecord",
    "RealismRecord",
    "SessionStart",
]

#: At most this many cursor samples per batch (2 s at 120 Hz, with room for a retried backlog).
MAX_SAMPLES = 1200

HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
Coordinate = Annotated[float, Field(ge=-10.0, le=10.0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0.0, le=3600.0, allow_inf_nan=False)]
Pixels = Annotated[float, Field(ge=-100_000, le=100_000, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False)


class SessionStart(Strict):
    batch_id: HexId
    consent: Literal[True]
    crowd: dict[Annotated[str, StringConstraints(max_length=32)], Annotated[str, StringConstraints(max_length=256)]] = (
        Field(default_factory=dict, max_length=12)
    )


class Viewport(Strict):
    w: Annotated[int, Field(ge=1, le=20_000)]
    h: Annotated[int, Field(ge=1, le=20_000)]


class Rect(Strict):
    x: Pixels
    y: Pixels
    w: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
    h: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]


class CursorRecord(Strict):
    kind: Literal["cursor"]
    batch_id: HexId
    trial_index: Annotated[int, Field(ge=0, le=10_000)]
    video_id: Name
    variant: Name
    practice: bool = False
    viewport: Viewport
    video_rect: Rect
    samples: Annotated[list[tuple[Seconds, Coordinate, Coordinate]], Field(min_length=1, max_length=MAX_SAMPLES)]
    #: what moved the window (the browser's PointerEvent.pointerType); None from pages built before it was sent
    pointer: Literal["mouse", "touch", "pen"] | None = None


class AttentionCheckRecord(Strict):
    kind: Literal["attention_check"]
    batch_id: HexId
    trial_index: Annotated[int, Field(ge=0, le=10_000)]
    shown_at_s: Seconds
    clicked: bool
    rt_ms: Annotated[float, Field(ge=0, le=600_000, allow_inf_nan=False)] | None = None


class RealismRecord(Strict):
    kind: Literal["realism"]
    batch_id: HexId
    realism_index: Annotated[int, Field(ge=0, le=10_000)]
    video_id: Name
    variant: Name
    mode: Literal["2afc", "rating"]
    choice: Literal["left", "right"] | None = None
    rating: Annotated[int, Field(ge=1, le=7)] | None = None


class CompleteRecord(Strict):
    kind: Literal["complete"]
    batch_id: HexId


PostedRecord = Annotated[
    CursorRecord | AttentionCheckRecord | RealismRecord | CompleteRecord, Field(discriminator="kind")
]
