"""ControlNet training step time and peak memory on the tiny backbone (the demo profile).

Builds the tiny random SD backbone as a diffusers directory, loads it through the real loader,
and runs full training steps (ControlNet + frozen U-Net, decoded x0_hat through the frozen VAE,
L1 + LPIPS + background loss, AdamW, clipping) - the same ``ControlNetTrainer.train_step`` the
pipeline uses - then one pickle-free checkpoint write. Inputs are synthetic structured frames
(gradient background + a product box): step time does not depend on pixel content, and the
numbers are timings, not model quality. Usage::

    .venv/bin/python bench/bench_train.py [--steps 20] [--batch 2] [--resolution 64] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from align_core.io.atomic import atomic_write_text
from align_core.stimuli.diffusion.backbone import Backbone, build_controlnet, build_tiny_backbone, load_backbone
from align_core.stimuli.diffusion.dataset import ControlSample, TrainingSet, build_training_set
from align_core.stimuli.diffusion.lpips_alex import LPIPS
from align_core.stimuli.diffusion.train import ControlNetTrainer, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_samples(n: int, height: int, width: int) -> list[ControlSample]:
    """Structured benchmark inputs: a gradient background and a product box per frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for k in range(n):
        frame = np.stack([xx / width, yy / height, np.full_like(xx, 0.5)], axis=-1) * 220
        mask = np.zeros((height, width), np.float32)
        y0, x0 = height // 5 + k % 4, width // 4 + k % 3
        mask[y0 : y0 + height // 3, x0 : x0 + width // 3] = 1
        frame[mask > 0] = (200, 40, 30)
        attention = np.exp(-(((xx / width - 0.5) ** 2 + (yy / height - 0.4) ** 2) / 0.05)).astype(np.float32)
        out.append(
            ControlSample(frame.astype(np.uint8), np.stack([mask, attention * mask]), "red bottle", f"bench{k % 4}")
        )
    return out


def maxrss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(trainer: ControlNetTrainer, data: TrainingSet, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` optimiser steps after ``warmup`` untimed ones; peak memory included."""
    cuda = trainer.device.type == "cuda"
    for _ in range(warmup):
        trainer.train_step(data)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        record = trainer.train_step(data)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "steps_timed": steps,
        "warmup_steps": warmup,
        "step_s_median": statistics.median(times),
        "step_s_mean": statistics.fmean(times),
        "step_s_min": min(times),
        "last_loss": record["loss"],
        "maxrss_mb": maxrss_mb(),
        "controlnet_params_m": sum(p.numel() for p in trainer.controlnet.parameters()) / 1e6,
    }
    if cuda:
        result["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def bench_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        max_steps=args.steps + args.warmup + 10,
        batch_size=args.batch,
        learning_rate=1e-5,
        warmup_steps=0,
        checkpoint_every=0,
        validate_every=0,
        device=args.device,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=not args.no_gradient_checkpointing,
    )


def common_arguments(parser: argparse.ArgumentParser, steps: int, batch: int, resolution: int) -> None:
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--resolution", type=int, default=resolution)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="bf16", help="CUDA only")
    parser.add_argument("--no-gradient-checkpointing", action="store_true", help="CUDA only")
    parser.add_argument("--out", type=Path, default=None, help="JSON result path (default bench/results/<name>.json)")


def finish(name: str, result: dict[str, Any], out: Path | None) -> None:
    """Print the result and write it as JSON."""
    path = out or RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, steps=20, batch=2, resolution=64)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message="random-alexnet")
    with tempfile.TemporaryDirectory() as tmp:
        backbone: Backbone = load_backbone(build_tiny_backbone(Path(tmp) / "tiny-sd", seed=0), "tiny")
        data = build_training_set(
            synthetic_samples(8, args.resolution, args.resolution),
            args.resolution,
            backbone.vae,
            backbone.encode_prompts,
        )
        lpips = LPIPS()
        trainer = ControlNetTrainer(backbone, build_controlnet(backbone), bench_config(args), lpips)
        result = measure(trainer, data, args.steps, args.warmup)
        started = time.perf_counter()
        trainer.save_checkpoint(Path(tmp) / "checkpoints", lineage={"bench": True})
        result["checkpoint_write_s"] = time.perf_counter() - started
    result.update(
        profile="tiny",
        backbone=backbone.lineage["description"],
        lpips_backbone=lpips.backbone_state,
        device=args.device,
        threads=torch.get_num_threads(),
        batch=args.batch,
        resolution=args.resolution,
        inputs="synthetic structured frames (timing only)",
    )
    finish("bench_train", result, args.out)


if __name__ == "__main__":
    main()
