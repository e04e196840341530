"""ControlNet training step time and peak memory at Stable Diffusion 1.5 size (research profile).

Nothing downloads: the U-Net, VAE and CLIP text encoder are built from SD 1.5's config values
with RANDOM weights (U-Net block_out_channels (320,640,1280,1280), cross_attention_dim 768,
attention_head_dim 8, layers_per_block 2, sample_size 64; VAE (128,256,512,512); CLIP text
hidden 768, 12 layers), so the numbers are compute and memory of the real shapes, not of a
trained model. The ControlNet is ``from_unet`` with the 2-channel control and SD's
conditioning embedding; each step is the pipeline's ``ControlNetTrainer.train_step`` (decoded
x0_hat with gradients through the VAE decoder, L1 + LPIPS + background loss, AdamW).

    # GPU (the research target): 512 px, batch 4, bf16 + gradient checkpointing
    .venv/bin/python bench/bench_train_sd15.py --device cuda
    # CPU smoke mode
    .venv/bin/python bench/bench_train_sd15.py --device cpu --resolution 256 --batch 1 --steps 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import bench_config, common_arguments, finish, maxrss_mb, measure, synthetic_samples  # noqa: E402

from align_core.stimuli.diffusion.backbone import SD15_SCHEDULER_CONFIG, Backbone, build_controlnet, tiny_tokenizer  # noqa: E402
from align_core.stimuli.diffusion.dataset import build_training_set  # noqa: E402
from align_core.stimuli.diffusion.lpips_alex import LPIPS  # noqa: E402
from align_core.stimuli.diffusion.train import ControlNetTrainer  # noqa: E402

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


def random_sd15_backbone(seed: int = 0) -> Backbone:
    """SD 1.5-shaped modules with random weights, plainly labelled as such."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()  # byte-level: token ids fit in CLIP's 49408 vocabulary
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    backbone = Backbone(
        vae=AutoencoderKL(**SD15_VAE),
        unet=UNet2DConditionModel(**SD15_UNET),
        text_encoder=text,
        tokenizer=tokenizer,
        noise_scheduler=DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        id=f"random-sd15-shaped-seed{seed}",
        kind="random",
        lineage={
            "pretrained": False,
            "description": f"SD 1.5-shaped modules built from config with RANDOM weights (seed {seed}); timing only",
        },
    )
    return backbone.freeze()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, steps=5, batch=4, resolution=512)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message="random-alexnet")
    started = time.perf_counter()
    backbone = random_sd15_backbone()
    build_s = time.perf_counter() - started
    samples = synthetic_samples(max(4, args.batch), args.resolution, args.resolution)
    data = build_training_set(samples, args.resolution, backbone.vae, backbone.encode_prompts, batch_size=1)
    controlnet = build_controlnet(backbone)
    lpips = LPIPS()
    trainer = ControlNetTrainer(backbone, controlnet, bench_config(args), lpips)
    result = measure(trainer, data, args.steps, args.warmup)
    result.update(
        profile="sd15-shaped-random",
        backbone=backbone.lineage["description"],
        unet_params_m=sum(p.numel() for p in backbone.unet.parameters()) / 1e6,
        model_build_s=build_s,
        lpips_backbone=lpips.backbone_state,
        device=args.device,
        threads=torch.get_num_threads(),
        batch=args.batch,
        resolution=args.resolution,
        mixed_precision=str(trainer.amp_dtype) if trainer.amp_dtype else "no (fp32)",
        gradient_checkpointing=trainer.gradient_checkpointing,
        inputs="synthetic structured frames (timing only)",
        maxrss_mb=maxrss_mb(),
    )
    finish(f"bench_train_sd15_{args.device}_{args.resolution}px_b{args.batch}", result, args.out)


if __name__ == "__main__":
    main()
