"""The unpartitioned ``controlnet_checkpoint``: one ControlNet trained on many videos' control tensors."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
from dagster import AssetExecutionContext, Config, DataVersion, MaterializeResult, MetadataValue, asset
from pydantic import Field

from align_assets.assets.control import CONTROL_FILE
from align_assets.metadata import png_markdown
from align_assets.partitions import video_partitions
from align_assets.resources import PlatformResource
from align_core.atomic import atomic_write_text
from align_core.catalog import load_catalog
from align_core.control import load_control_tensors
from align_core.diffusion import (
    LPIPS,
    TrainConfig,
    build_tiny_backbone,
    build_training_set,
    load_backbone,
    split_by_video,
    train_controlnet,
)
from align_core.training_data import samples_from_video, training_run_key
from align_core.visuals import curves_plot

GPU_OP_TAGS = {"dagster-celery/queue": "gpu"}  # Kubernetes GPU pods come from deploy/executors.yaml
CURRENT_FILE = "current.json"


class CheckpointSettings(Config):
    """Training knobs; the defaults train the tiny demo backbone on CPU in about a minute."""

    backbone: str = Field(default="tiny", description="'tiny' (built from a config) or a Stable Diffusion 1.5 directory/hub id")
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
    training_videos: list[str] | None = Field(default=None, description="partitions to train on (default: all with product masks)")
    seed: int = Field(default=0)
    cpu_threads: int = Field(
        default=1, description="torch threads on CPU; tiny models thrash with more on shared cores (0.08 vs 1-7 s/step)"
    )


def _backbone_dir(platform: PlatformResource, settings: CheckpointSettings) -> tuple[str, str]:
    if settings.backbone != "tiny":
        return settings.backbone, "pretrained"
    directory = platform.layout.models_dir / "tiny-sd"
    if not (directory / "model_index.json").exists():
        build_tiny_backbone(directory, seed=0)
    return str(directory), "tiny"


def _alexnet_path(platform: PlatformResource) -> Path | None:
    candidates = sorted((platform.layout.models_dir / "alexnet").glob("alexnet*.*")) if (platform.layout.models_dir / "alexnet").is_dir() else []
    return candidates[0] if candidates else None


def alexnet_weights(platform: PlatformResource) -> Path:
    """The AlexNet weights LPIPS loads: ``$ALIGN_ALEXNET_WEIGHTS``, else under the DATA directory's
    ``models/alexnet`` (never relative to the working directory); when absent, the expected path,
    which LPIPS then names in its "random-alexnet" flag."""
    from align_core.diffusion.lpips_alex import ALEXNET_ENV

    if os.environ.get(ALEXNET_ENV):
        return Path(os.environ[ALEXNET_ENV])
    return _alexnet_path(platform) or platform.layout.models_dir / "alexnet" / "alexnet-owt-7be5be79.pth"


@asset(
    deps=["control_tensors", "video_catalog"],
    group_name="model",
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    kinds={"pytorch", "safetensors"},
)
def controlnet_checkpoint(
    context: AssetExecutionContext, platform: PlatformResource, config: CheckpointSettings
) -> MaterializeResult:
    """Train the ControlNet (frozen SD backbone) on [M_t, S_t] from the training videos' control tensors.

    Training resumes from the latest checkpoint of an interrupted run with the same config and
    data; a different config or data set starts a fresh run. The current checkpoint is recorded
    in ``current.json`` (with its sha256) for the editors.
    """
    layout = platform.layout
    videos = config.training_videos or sorted(video_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    samples = []
    used = []
    for video_id in videos:
        control_path = layout.artifact_dir("control_tensors", video_id) / CONTROL_FILE
        if not control_path.exists():
            context.log.warning(f"{video_id}: no control tensors yet, left out of training")
            continue
        catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
        if not catalog.keyword.segmentable:
            continue
        control = load_control_tensors(control_path)
        found = samples_from_video(
            video_id, catalog.probe.path, control, catalog.keyword.keyword,
            stride=config.frame_stride, limit=config.max_frames_per_video,
        )
        if found:
            samples.extend(found)
            used.append(video_id)
    if len(used) < 1:
        raise ValueError(
            f"no training samples: none of {len(videos)} videos has a segmentable keyword with product masks "
            "(screened keywords and videos whose product never appears are left out; see variant_plans' "
            "'reason'). Give the videos a visible product keyword in raw/keywords.csv, or, with the "
            "salience editor (the demo profile's), skip this asset: variant_videos does not need it."
        )

    backbone_ref, kind = _backbone_dir(platform, config)
    device = platform.defaults.device
    if device == "cpu" and config.cpu_threads > 0:
        import torch

        torch.set_num_threads(config.cpu_threads)
    backbone = load_backbone(backbone_ref, kind=kind, device=device)
    alexnet = alexnet_weights(platform)
    lpips_pretrained = LPIPS(alexnet).pretrained
    lambda_lpips = config.lambda_lpips if config.lambda_lpips is not None else (1.0 if lpips_pretrained else 0.0)
    train_config = TrainConfig(
        max_steps=config.steps, batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_steps, lambda_recon=config.lambda_recon,
        lambda_lpips=lambda_lpips, lambda_bg=config.lambda_bg, use_ema=config.use_ema,
        checkpoint_every=config.checkpoint_every, keep_last=config.keep_last, validate_every=config.validate_every,
        seed=config.seed, device=device, mixed_precision="bf16" if device == "cuda" else "no",
        gradient_checkpointing=device == "cuda", lpips_alexnet_path=str(alexnet) if alexnet else None,
    )
    train, val = split_by_video(samples, config.val_fraction, config.seed)
    train_set = build_training_set(train, config.resolution, backbone.vae, encode_prompts=backbone.encode_prompts)
    val_set = build_training_set(val, config.resolution, backbone.vae, encode_prompts=backbone.encode_prompts) if val else None
    run_key = training_run_key(train_config.to_json(), used, train_set.info["content_sha256"])
    base = layout.artifact_dir("controlnet_checkpoint")
    run_dir = base / "runs" / run_key
    context.log.info(f"training on {len(train)} frames from {len(set(s.video_id for s in train))} videos; run {run_dir}")
    result = train_controlnet(backbone, train_set, val_set, train_config, run_dir, resume=True, progress=False)
    for stale in (base / "runs").iterdir():
        if stale.is_dir() and stale.name != run_key:
            shutil.rmtree(stale, ignore_errors=True)

    history = result.loss_history
    steps = np.array([r["step"] for r in history])
    curves = {name: np.array([r[name] for r in history]) for name in ("loss", "diff", "recon", "bg") if history and name in history[0]}
    plot = curves_plot(base / "loss_curve.png", steps, curves, title="ControlNet training loss", ylabel="loss")
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
    atomic_write_text(base / CURRENT_FILE, json.dumps(current, indent=2))
    last = history[-1] if history else {}
    validation = result.validation[-1] if result.validation else {}
    # The weights' hash is the data version: variant videos made with other weights show as stale.
    return MaterializeResult(
        data_version=DataVersion(result.weights_sha256),
        metadata={
            "steps": result.steps,
            "final_loss": float(last.get("loss", float("nan"))),
            "final_losses": MetadataValue.json({k: v for k, v in last.items() if isinstance(v, float)}),
            "validation_loss": MetadataValue.json(validation),
            "loss_curve": png_markdown(plot, alt="training loss"),
            "checkpoint_path": MetadataValue.path(str(result.checkpoint_dir)),
            "checkpoint_sha256": result.weights_sha256,
            "backbone_id": result.lineage["backbone_id"],
            "lpips_backbone_state": result.lineage["lpips_backbone"],
            "lambda_lpips": lambda_lpips,
            "train_frames": len(train),
            "train_videos": MetadataValue.json(current["train_videos"]),
            "val_videos": MetadataValue.json(current["val_videos"]),
            "weights_used": MetadataValue.md("\n".join(f"- {w}" for w in result.lineage["warnings"]) or "pretrained backbone and LPIPS"),
        }
    )
