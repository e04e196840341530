"""The ``controlnet_checkpoint`` stage: pick training frames, train (resumably), record the checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from align_core.inputs.catalog import load_catalog
from align_core.io.atomic import atomic_write_text
from align_core.io.layout import DataLayout
from align_core.io.visuals import curves_plot
from align_core.perception.control import load_control_tensors

__all__ = [
    "CheckpointSettings",
    "alexnet_weights",
    "POINTER_PATH_KEYS",
    "portable_checkpoint_pointer",
    "read_checkpoint_pointer",
    "run_checkpoint",
]

if TYPE_CHECKING:  # torch is imported only by the stage that trains
    from align_core.stimuli.diffusion.dataset import ControlSample


class CheckpointSettings(BaseModel):
    """Training knobs; the defaults train the tiny demo backbone on CPU in about a minute."""

    backbone: str = Field(
        default="tiny", description="'tiny' (built from a config) or a Stable Diffusion 1.5 directory/hub id"
    )
    steps: int = Field(default=240, description="optimiser steps")
    learning_rate: float = Field(default=1e-4)
    batch_size: int = Field(default=4)
    gradient_accumulation_steps: int = Field(default=1)
    resolution: int = Field(default=64, description="training resolution (square); 512 for SD 1.5")
    warmup_steps: int = Field(default=20)
    lambda_recon: float = Field(default=0.1)
    lambda_lpips: float | None = Field(
        default=None, description="LPIPS weight; default 1.0 with pretrained AlexNet weights, else 0 (and said so)"
    )
    lambda_bg: float = Field(default=0.1)
    use_ema: bool = Field(default=False)
    checkpoint_every: int = Field(default=60)
    keep_last: int = Field(default=2)
    validate_every: int = Field(default=60)
    val_fraction: float = Field(default=0.25, description="share of videos held out for validation (split by video)")
    frame_stride: int = Field(default=4, description="take every k-th frame with the product visible")
    max_frames_per_video: int = Field(default=24)
    training_videos: list[str] | None = Field(
        default=None, description="partitions to train on (default: all with product masks)"
    )
    seed: int = Field(default=0)
    cpu_threads: int = Field(
        default=1, description="torch threads on CPU; tiny models thrash with more on shared cores (0.08 vs 1-7 s/step)"
    )


@dataclass
class CheckpointResult:
    current: dict[str, Any]  # what ``current.json`` records for the editors
    training: Any  # align_core.stimuli.diffusion.TrainResult
    lambda_lpips: float
    train_frames: int
    paths: dict[str, Path]


#: Paths in ``current.json`` that are stored relative to the data directory when they lie inside it.
POINTER_PATH_KEYS = ("checkpoint_dir", "controlnet_dir", "backbone")


def read_checkpoint_pointer(layout: DataLayout) -> dict[str, Any] | None:
    """The current checkpoint's record (``current.json``), or None before the first training.

    Its paths are resolved against this node's data directory: a shared volume may be mounted at
    a different path on the node that trained than on the one that edits.
    """
    path = layout.artifact("controlnet_checkpoint", "current")
    if not path.exists():
        return None
    pointer = json.loads(path.read_text())
    for key in POINTER_PATH_KEYS:
        if key in pointer and not Path(pointer[key]).is_absolute() and _looks_like_path(pointer[key]):
            pointer[key] = str(layout.root / pointer[key])
    return pointer


def portable_checkpoint_pointer(layout: DataLayout, pointer: dict[str, Any]) -> dict[str, Any]:
    """``pointer`` with the paths inside the data directory made relative to it (for ``current.json``)."""
    portable = dict(pointer)
    for key in POINTER_PATH_KEYS:
        value = portable.get(key)
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(layout.root):
            portable[key] = Path(value).relative_to(layout.root).as_posix()
    return portable


def _looks_like_path(value: str) -> bool:
    """A stored relative path (``artifacts/...``, ``models/...``), not a hub id such as ``org/model``."""
    return value.split("/", 1)[0] in {"artifacts", "models"}


def training_samples(
    layout: DataLayout, video_ids: Sequence[str], settings: CheckpointSettings, warn: Callable[[str], None] = print
) -> tuple[list[ControlSample], list[str]]:
    """Frames with the product visible from every video with a segmentable keyword; (samples, videos used)."""
    from align_core.stimuli.diffusion.training_data import samples_from_video

    samples: list[ControlSample] = []
    used: list[str] = []
    for video_id in video_ids:
        control_path = layout.artifact("control_tensors", "control", video_id)
        if not control_path.exists():
            warn(f"{video_id}: no control tensors yet, left out of training")
            continue
        catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
        if not catalog.keyword.segmentable:
            continue
        found = samples_from_video(
            video_id,
            catalog.probe.path,
            load_control_tensors(control_path),
            catalog.keyword.keyword,
            stride=settings.frame_stride,
            limit=settings.max_frames_per_video,
        )
        if found:
            samples.extend(found)
            used.append(video_id)
    if not used:
        raise ValueError(
            f"no training samples: none of {len(video_ids)} videos has a segmentable keyword with product masks "
            "(screened keywords and videos whose product never appears are left out; see variant_plans' "
            "'reason'). Give the videos a visible product keyword in raw/keywords.csv, or, with the "
            "salience editor (the demo profile's), skip this asset: variant_videos does not need it."
        )
    return samples, used


def _backbone(layout: DataLayout, settings: CheckpointSettings) -> tuple[str, str]:
    from align_core.stimuli.diffusion import build_tiny_backbone

    if settings.backbone != "tiny":
        return settings.backbone, "pretrained"
    directory = layout.models_dir / "tiny-sd"
    if not (directory / "model_index.json").exists():
        build_tiny_backbone(directory, seed=0)
    return str(directory), "tiny"


def alexnet_weights(layout: DataLayout) -> Path:
    """The AlexNet weights LPIPS loads: ``$ALIGN_ALEXNET_WEIGHTS``, else under the DATA directory's
    ``models/alexnet`` (never relative to the working directory); when absent, the expected path,
    which LPIPS then names in its "random-alexnet" flag."""
    import os

    from align_core.stimuli.diffusion.lpips_alex import ALEXNET_ENV

    if os.environ.get(ALEXNET_ENV):
        return Path(os.environ[ALEXNET_ENV])
    directory = layout.models_dir / "alexnet"
    candidates = sorted(directory.glob("alexnet*.*")) if directory.is_dir() else []
    return candidates[0] if candidates else directory / "alexnet-owt-7be5be79.pth"


def run_checkpoint(
    layout: DataLayout,
    video_ids: Sequence[str],
    settings: CheckpointSettings,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> CheckpointResult:
    """Train the ControlNet on the videos' control tensors; resume an interrupted run with the same config and data.

    The finished checkpoint is recorded in ``current.json`` (with its weights' sha256) for the editors.
    """
    from align_core.stimuli.diffusion import (
        LPIPS,
        build_training_set,
        load_backbone,
        split_by_video,
        train_controlnet,
    )
    from align_core.stimuli.diffusion.training_data import training_run_key

    samples, used = training_samples(layout, settings.training_videos or video_ids, settings, warn=log)
    backbone_ref, kind = _backbone(layout, settings)
    if device == "cpu" and settings.cpu_threads > 0:
        import torch

        torch.set_num_threads(settings.cpu_threads)
    backbone = load_backbone(backbone_ref, kind=kind, device=device)
    alexnet = alexnet_weights(layout)
    lpips_pretrained = LPIPS(alexnet).pretrained
    lambda_lpips = settings.lambda_lpips if settings.lambda_lpips is not None else (1.0 if lpips_pretrained else 0.0)
    train_config = _train_config(settings, device, lambda_lpips, alexnet)
    train, val = split_by_video(samples, settings.val_fraction, settings.seed)
    train_set = build_training_set(train, settings.resolution, backbone.vae, encode_prompts=backbone.encode_prompts)
    val_set = (
        build_training_set(val, settings.resolution, backbone.vae, encode_prompts=backbone.encode_prompts)
        if val
        else None
    )
    run_key = training_run_key(
        _mount_independent(layout, train_config.to_json()), used, train_set.info["content_sha256"]
    )
    runs = layout.artifact("controlnet_checkpoint", "runs")
    run_dir = runs / run_key
    log(f"training on {len(train)} frames from {len(set(s.video_id for s in train))} videos; run {run_dir}")
    result = train_controlnet(backbone, train_set, val_set, train_config, run_dir, resume=True, progress=False)
    for stale in runs.iterdir():
        if stale.is_dir() and stale.name != run_key:
            shutil.rmtree(stale, ignore_errors=True)

    plot = _loss_curve_plot(layout, result.loss_history)
    current = {
        "checkpoint_dir": str(result.checkpoint_dir),
        "controlnet_dir": str(result.checkpoint_dir / "controlnet"),
        "weights_sha256": result.weights_sha256,
        "backbone": backbone_ref,
        "backbone_kind": kind,
        "backbone_id": result.lineage["backbone_id"],
        "lpips_backbone": result.lineage["lpips_backbone"],
        "lambda_lpips": lambda_lpips,
        "steps": result.steps,
        "train_videos": sorted(set(s.video_id for s in train)),
        "val_videos": sorted(set(s.video_id for s in val)),
        "warnings": result.lineage["warnings"],
    }
    current_path = atomic_write_text(
        layout.artifact("controlnet_checkpoint", "current"),
        json.dumps(portable_checkpoint_pointer(layout, current), indent=2),
    )
    return CheckpointResult(current, result, lambda_lpips, len(train), {"current": current_path, "loss_curve": plot})


def _mount_independent(layout: DataLayout, config: dict[str, Any]) -> dict[str, Any]:
    """The training config with paths inside the data directory relative to it, so that the run
    key (and with it resuming) does not change when the volume is mounted somewhere else."""
    keyed = dict(config)
    for key, value in config.items():
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(layout.root):
            keyed[key] = Path(value).relative_to(layout.root).as_posix()
    return keyed


def _train_config(settings: CheckpointSettings, device: str, lambda_lpips: float, alexnet: Path | None) -> Any:
    """The trainer's :class:`~align_core.stimuli.diffusion.TrainConfig` from the stage's settings."""
    from align_core.stimuli.diffusion import TrainConfig

    return TrainConfig(
        max_steps=settings.steps,
        batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        lambda_recon=settings.lambda_recon,
        lambda_lpips=lambda_lpips,
        lambda_bg=settings.lambda_bg,
        use_ema=settings.use_ema,
        checkpoint_every=settings.checkpoint_every,
        keep_last=settings.keep_last,
        validate_every=settings.validate_every,
        seed=settings.seed,
        device=device,
        mixed_precision="bf16" if device == "cuda" else "no",
        gradient_checkpointing=device == "cuda",
        lpips_alexnet_path=str(alexnet) if alexnet else None,
    )


def _loss_curve_plot(layout: DataLayout, history: list[dict[str, Any]]) -> Path:
    """The training loss curves (total and each term the history has) as the stage's plot."""
    import numpy as np

    steps = np.array([r["step"] for r in history])
    curves = {
        name: np.array([r[name] for r in history])
        for name in ("loss", "diff", "recon", "bg")
        if history and name in history[0]
    }
    return curves_plot(
        layout.artifact("controlnet_checkpoint", "loss_curve"),
        steps,
        curves,
        title="ControlNet training loss",
        ylabel="loss",
    )
