"""Training data for the ControlNet: frames, control tensors and prompts as plain arrays.

Samples are numpy arrays so this package depends on no other stage. The set is resized once to
the training resolution and its VAE latents are cached once (the VAE is frozen, so encoding per
step would only burn time). Train/validation split is BY VIDEO: frames of one ad are highly
correlated, and a frame-level split would leak the validation set into training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL

from align_core.io.hashing import bytes_sha256

__all__ = [
    "ControlSample",
    "TrainingSet",
    "build_training_set",
    "resize_control",
    "resize_frame",
    "split_by_video",
]

PROMPT_DROP_PROBABILITY = 0.5
"""ControlNet paper: half the prompts are replaced by "" so the control alone must carry the edit."""


@dataclass(frozen=True)
class ControlSample:
    """One training keyframe.

    frame: RGB uint8 ``(H, W, 3)``; control: float32 ``(2, H, W)`` = [M_t, S_t];
    prompt: the product keyword (or a prompt built from it); video_id: for the split.
    """

    frame: np.ndarray
    control: np.ndarray
    prompt: str
    video_id: str

    def __post_init__(self) -> None:
        if self.frame.ndim != 3 or self.frame.shape[2] != 3 or self.frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 (H,W,3), got {self.frame.dtype} {self.frame.shape}")
        if self.control.shape != (2, *self.frame.shape[:2]):
            raise ValueError(f"control must be (2,H,W) matching the frame, got {self.control.shape}")


def split_by_video(
    samples: Sequence[ControlSample], val_fraction: float, seed: int
) -> tuple[list[ControlSample], list[ControlSample]]:
    """Split samples into (train, validation) so that no video has frames on both sides.

    Video ids are shuffled with a seeded generator; at least one video goes to validation when
    ``val_fraction > 0`` and there are two or more videos.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    videos = sorted({s.video_id for s in samples})
    order = np.random.default_rng(seed).permutation(len(videos))
    n_val = 0
    if val_fraction > 0 and len(videos) >= 2:
        n_val = min(len(videos) - 1, max(1, int(round(val_fraction * len(videos)))))
    val_videos = {videos[i] for i in order[:n_val]}
    train = [s for s in samples if s.video_id not in val_videos]
    val = [s for s in samples if s.video_id in val_videos]
    return train, val


def _resize_resolution(resolution: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if height % 8 or width % 8:
        raise ValueError(f"training resolution must be a multiple of 8, got {height}x{width}")
    return int(height), int(width)


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-resample an RGB frame (anti-aliased downscaling)."""
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def resize_control(control: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize C_t: the mask by nearest neighbour (it stays binary), S_t by area averaging.

    S_t is re-multiplied by the resized mask so S = A*M still holds at the new size.
    """
    if control.shape[1:] == (height, width):
        return control.astype(np.float32)
    mask = cv2.resize(control[0].astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    salience = cv2.resize(control[1].astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    return np.stack([mask, salience * mask]).astype(np.float32)


@dataclass
class TrainingSet:
    """Resized pixels, controls, cached latents and prompt embeddings for one split."""

    pixels: torch.Tensor  # (N,3,H,W) float32 in [-1,1]
    controls: torch.Tensor  # (N,2,H,W) float32
    latents: torch.Tensor  # (N,4,H/8,W/8) float32, already multiplied by the VAE scaling factor
    prompts: list[str]
    video_ids: list[str]
    resolution: tuple[int, int]
    prompt_drop_probability: float = PROMPT_DROP_PROBABILITY
    prompt_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def draw_prompts(self, indices: Sequence[int], generator: torch.Generator | None) -> list[str]:
        """Each sample's prompt, replaced by "" with ``prompt_drop_probability`` (seeded draw).

        ``generator=None`` keeps every prompt (validation must not depend on a coin flip).
        """
        prompts = [self.prompts[i] for i in indices]
        if generator is None or self.prompt_drop_probability <= 0:
            return prompts
        coins = torch.rand(len(prompts), generator=generator)
        return ["" if float(c) < self.prompt_drop_probability else p for c, p in zip(coins, prompts, strict=False)]

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Cached text-encoder states for these prompts, stacked ``(B,77,D)``."""
        return torch.cat([self.prompt_embeddings[p] for p in prompts], dim=0)


@torch.no_grad()
def build_training_set(
    samples: Sequence[ControlSample],
    resolution: int | tuple[int, int],
    vae: AutoencoderKL,
    encode_prompts: Any | None = None,
    prompt_drop_probability: float = PROMPT_DROP_PROBABILITY,
    batch_size: int = 8,
) -> TrainingSet:
    """Resize samples, encode their latents once with the frozen VAE, cache prompt embeddings.

    Latents use the posterior mean (deterministic, so resumed runs see identical data).
    ``encode_prompts`` (e.g. ``Backbone.encode_prompts``) maps a list of prompts to text
    states; when given, every keyword and "" are encoded once here.
    """
    if not samples:
        raise ValueError("build_training_set needs at least one sample")
    height, width = _resize_resolution(resolution)
    frames = np.stack([resize_frame(s.frame, height, width) for s in samples])
    controls = np.stack([resize_control(s.control, height, width) for s in samples])
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    latents = []
    for start in range(0, len(samples), batch_size):
        chunk = pixels[start : start + batch_size].to(device=device, dtype=dtype)
        latents.append(vae.encode(chunk).latent_dist.mean.float().cpu() * vae.config.scaling_factor)
    prompts = [s.prompt for s in samples]
    content_sha256 = bytes_sha256(
        chunk
        for frame, control, sample in zip(frames, controls, samples, strict=False)
        for chunk in (frame, control, f"{sample.video_id}\0{sample.prompt}\0".encode())
    )
    embeddings: dict[str, torch.Tensor] = {}
    if encode_prompts is not None:
        unique = sorted(set(prompts) | {""})
        states = encode_prompts(unique)
        embeddings = {p: states[i : i + 1].float().cpu() for i, p in enumerate(unique)}
    return TrainingSet(
        pixels=pixels,
        controls=torch.from_numpy(controls),
        latents=torch.cat(latents),
        prompts=prompts,
        video_ids=[s.video_id for s in samples],
        resolution=(height, width),
        prompt_drop_probability=prompt_drop_probability,
        prompt_embeddings=embeddings,
        info={
            "n_samples": len(samples),
            "n_videos": len({s.video_id for s in samples}),
            "latents": "vae posterior mean",
            "content_sha256": content_sha256,
        },
    )
