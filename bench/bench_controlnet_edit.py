"""ControlNet keyframe edit: seconds per keyframe and peak GPU memory on a real-size frame.

The research profile edits keyframes of 1080x1920 ads with the trained ControlNet on SD 1.5 and
carries the edits between keyframes by optical flow. This times :class:`ControlNetEditor.edit`
(VAE encode, the img2img denoising loop with ControlNet residuals and latent blending, VAE
decode, the pixel copy outside ``allowed``) at several working resolutions. Weights are RANDOM
(SD 1.5-shaped modules from config, as in ``bench_train_sd15.py``): the numbers are compute and
memory of the real shapes, not of a trained model's output.

    .venv/bin/python bench/bench_controlnet_edit.py --device cuda          # the research target
    .venv/bin/python bench/bench_controlnet_edit.py --device cpu --tiny    # smoke test here
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_sd15 import random_sd15_backbone  # noqa: E402

from align_core.stimuli.diffusion.backbone import build_controlnet, build_tiny_backbone, load_backbone  # noqa: E402
from align_core.stimuli.editing.base import KeyframeEditRequest  # noqa: E402
from align_core.stimuli.editing.controlnet_editor import ControlNetEditor  # noqa: E402


def real_size_request(height: int, width: int, seed: int = 0) -> KeyframeEditRequest:
    """A structured 9:16 frame with a product box in the lower middle, boosted."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) % 256)], -1).astype(np.uint8)
    frame = np.clip(frame.astype(int) + rng.integers(-20, 20, frame.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), bool)
    mask[int(height * 0.55) : int(height * 0.8), int(width * 0.3) : int(width * 0.7)] = True
    attention = rng.random((height, width), dtype=np.float32)
    control = np.stack([mask.astype(np.float32), attention * mask * 1.5]).clip(0, 1).astype(np.float32)
    return KeyframeEditRequest(
        frame=frame,
        mask=mask,
        attention=attention,
        target_control=control,
        original_alignment=0.2,
        target_alignment=0.3,
        allowed=np.ones((height, width), bool),
        kind="boost",
        strength=0.5,
        seed=seed,
    )


def time_edits(editor: ControlNetEditor, request: KeyframeEditRequest, repeats: int) -> dict[str, float]:
    """Median seconds per edit after one warm-up, and peak CUDA memory (GiB) when on a GPU."""
    editor.edit(request)
    if editor.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        editor.edit(request)
        if editor.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if editor.device.type == "cuda" else float("nan")
    return {"s_per_keyframe": float(np.median(times)), "peak_gpu_gib": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny test backbone at 216x384 (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=20, help="scheduler steps (strength 0.5 denoises half)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolutions", default="512,768,full", help="working long side per run ('full' = frame)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="random-alexnet")
    height, width = (384, 216) if args.tiny else (1920, 1080)
    backbone = (
        load_backbone(build_tiny_backbone(tempfile.mkdtemp()), kind="tiny") if args.tiny else random_sd15_backbone()
    )
    controlnet = build_controlnet(backbone)
    request = real_size_request(height, width)
    rows = []
    for label in args.resolutions.split(","):
        resolution = None if label == "full" else int(label)
        editor = ControlNetEditor(
            backbone, controlnet, steps=args.steps, strength=0.5, resolution=resolution, device=args.device
        )
        row = {
            "frame": f"{width}x{height}",
            "work_long_side": label,
            "steps": args.steps,
            "denoised_steps": int(args.steps * 0.5),
            "dtype": str(editor.dtype),
            "device": args.device,
            "backbone": backbone.id,
            **time_edits(editor, request, args.repeats),
        }
        # A 30 s ad at 30 fps with a keyframe every 8 frames, seven variants.
        row["s_per_30s_ad_7_variants"] = row["s_per_keyframe"] * (900 // 8 + 1) * 7
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
