"""Training samples for the ControlNet: keyframes of each video with their control tensors.

Samples are every ``stride``-th frame in which the product is visible (a ControlNet taught on
empty controls learns nothing about where the product is), streamed so only the chosen frames
are held. Prompts come from the screened keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from align_core.io.video_io import iter_frames
from align_core.perception.control import ControlTensors
from align_core.stimuli.diffusion.dataset import ControlSample

__all__ = [
    "samples_from_video",
    "training_run_key",
]


def samples_from_video(
    video_id: str,
    video_path: str | Path,
    control: ControlTensors,
    prompt: str,
    *,
    stride: int = 6,
    require_product: bool = True,
    limit: int | None = None,
) -> list[ControlSample]:
    """Every ``stride``-th frame in which the product is visible (every frame, unless told otherwise).

    The stride counts visible frames, not all frames: a product shown only between the grid's
    frames (a short scene) still gives samples.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    coverage = control.coverage_per_frame()
    candidates = [t for t in range(control.frame_count) if coverage[t] > 0 or not require_product]
    wanted = candidates[::stride]
    if limit is not None:
        wanted = wanted[:limit]
    chosen = set(wanted)
    samples = []
    if not chosen:
        return samples
    for index, frame in enumerate(iter_frames(video_path, 0, max(chosen) + 1)):
        if index in chosen:
            if frame.shape[:2] != control.masks.shape[1:]:
                raise ValueError(
                    f"video {video_id}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but its control tensors "
                    f"are {control.masks.shape[2]}x{control.masks.shape[1]}"
                )
            samples.append(ControlSample(frame=frame, control=control.control(index), prompt=prompt, video_id=video_id))
    return samples


def training_run_key(config: dict, video_ids: Sequence[str], data_digest: str) -> str:
    """Runs with the same config and data resume each other; anything else starts fresh."""
    import hashlib
    import json

    payload = json.dumps({"config": config, "videos": sorted(video_ids), "data": data_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
