"""The ControlNet keyframe editor: control-conditioned img2img with latent blending.

Why an explicit denoising loop rather than diffusers' ``StableDiffusionControlNetImg2ImgPipeline``:
that pipeline's control preprocessing (``VaeImageProcessor`` with RGB conversion) is built for
3-channel images, it draws its own noise, and it has no per-step hook that receives the noise
it used - which latent blending needs (outside ``allowed`` the latents are replaced, every
step, by the ORIGINAL latents noised with the same noise to the next timestep). The loop below
is the pipeline's algorithm (img2img start at ``strength``, classifier-free guidance, ControlNet
residuals into the U-Net's down and mid blocks) plus that blend, with all randomness from one
``torch.Generator`` seeded by ``request.seed``: deterministic on CPU.

Denoising strength is a property of the editor, not of the request: every variant - baseline
included - goes through the same amount of re-generation, so they all carry the same artefacts
and differ only in their control C'_t (which carries the requested change in S'_t).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, DDIMScheduler, DDPMScheduler

from align_core.io.hashing import bytes_sha256, file_sha256
from align_core.stimuli.diffusion.backbone import Backbone, move_module
from align_core.stimuli.diffusion.checkpoint import WEIGHTS_NAME, controlnet_weights_path, load_controlnet
from align_core.stimuli.diffusion.dataset import resize_control, resize_frame
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest

__all__ = [
    "ControlNetEditor",
]

SchedulerName = Literal["ddim", "ddpm"]


def _state_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's tensors (for a ControlNet handed over in memory)."""
    return bytes_sha256(
        chunk
        for name, tensor in sorted(module.state_dict().items())
        for chunk in (name.encode(), tensor.detach().cpu().contiguous().numpy())
    )


class ControlNetEditor(KeyframeEditor):
    """Edits a keyframe with the trained ControlNet on its backbone.

    Subclasses the :class:`KeyframeEditor` protocol for its default ``edit_with_report``: the
    diffusion edit has no budget of its own, so its report is an ``UnreportedEdit`` measured on
    the output.
    """

    name = "controlnet"
    propagation = "keyframes"  # one diffusion edit per keyframe, carried between by optical flow
    calibrates = False  # strength is the img2img noise level, set by config

    def __init__(
        self,
        backbone: Backbone,
        controlnet: ControlNetModel | str | os.PathLike[str],
        steps: int = 20,
        strength: float = 0.5,
        guidance_scale: float = 1.0,
        scheduler: SchedulerName = "ddim",
        resolution: int | tuple[int, int] | None = None,
        device: str = "cpu",
        prompt: str = "",
        conditioning_scale: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``controlnet`` is a checkpoint/export directory or a loaded model.

        ``resolution``: None works at the frame's size (rounded down to the VAE factor); an int
        is the longer side (aspect kept); a tuple is (height, width). ``prompt`` is the product
        keyword prompt (the request does not carry it); ``guidance_scale`` > 1 enables
        classifier-free guidance against the empty prompt. ``dtype`` defaults to float32 on
        CPU and float16 on CUDA; backbone and ControlNet are moved/cast to it in place.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        if scheduler not in ("ddim", "ddpm"):
            raise ValueError(f"scheduler must be 'ddim' or 'ddpm', got {scheduler!r}")
        self.device = torch.device(device)
        if isinstance(controlnet, ControlNetModel):
            self.controlnet = controlnet
            self.checkpoint_path: str | None = None
            self.checkpoint_sha256 = f"in-memory:{_state_digest(controlnet)}"
        else:
            self.controlnet = load_controlnet(controlnet)
            self.checkpoint_path = str(Path(controlnet).resolve())
            self.checkpoint_sha256 = file_sha256(controlnet_weights_path(controlnet))
        if self.controlnet.config.conditioning_channels != 2:
            raise ValueError("the ControlNet must take the 2-channel control C_t = [M_t, S_t]")
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self.backbone = backbone.freeze().to(self.device, self.dtype)
        move_module(self.controlnet, self.device, self.dtype)
        self.controlnet.requires_grad_(False)
        self.controlnet.eval()
        self.steps = int(steps)
        self.strength = float(strength)
        self.guidance_scale = float(guidance_scale)
        self.scheduler_name: SchedulerName = scheduler
        self.resolution = resolution
        self.prompt = prompt
        self.conditioning_scale = float(conditioning_scale)
        self._text_cache: dict[str, torch.Tensor] = {}

    # --- helpers ----------------------------------------------------------------------------
    def _new_scheduler(self) -> DDIMScheduler | DDPMScheduler:
        config = self.backbone.noise_scheduler.config
        if self.scheduler_name == "ddim":
            return DDIMScheduler.from_config(config)
        return DDPMScheduler.from_config(config)

    def _work_size(self, height: int, width: int) -> tuple[int, int]:
        f = self.backbone.vae_scale_factor
        if self.resolution is None:
            h, w = height, width
        elif isinstance(self.resolution, int):
            scale = self.resolution / max(height, width)
            h, w = round(height * scale), round(width * scale)
        else:
            h, w = self.resolution
        return max(f, (h // f) * f), max(f, (w // f) * f)

    def _text(self, prompt: str) -> torch.Tensor:
        if prompt not in self._text_cache:
            self._text_cache[prompt] = self.backbone.encode_prompts([prompt]).to(self.dtype)
        return self._text_cache[prompt]

    def _predict(
        self, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor, control: torch.Tensor
    ) -> torch.Tensor:
        cfg = self.guidance_scale > 1.0
        model_in = torch.cat([latents, latents]) if cfg else latents
        down, mid = self.controlnet(
            model_in,
            t,
            encoder_hidden_states=text,
            controlnet_cond=control,
            conditioning_scale=self.conditioning_scale,
            return_dict=False,
        )
        out = self.backbone.unet(
            model_in,
            t,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
        if cfg:
            uncond, cond = out.chunk(2)
            out = uncond + self.guidance_scale * (cond - uncond)
        return out

    # --- KeyframeEditor ---------------------------------------------------------------------
    @torch.no_grad()
    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        """Return the edited RGB uint8 frame; pixels outside ``request.allowed`` are the original's."""
        frame = np.asarray(request.frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 (H,W,3), got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        allowed = np.asarray(request.allowed, dtype=bool)
        if allowed.shape != (height, width) or request.target_control.shape != (2, height, width):
            raise ValueError("allowed and target_control must match the frame's height and width")
        h, w = self._work_size(height, width)
        f = self.backbone.vae_scale_factor
        device = self.device

        dtype = self.dtype
        pixels = (
            torch.from_numpy(resize_frame(frame, h, w))
            .permute(2, 0, 1)[None]
            .float()
            .div(127.5)
            .sub(1.0)
            .to(device, dtype)
        )
        control = torch.from_numpy(resize_control(np.asarray(request.target_control, np.float32), h, w))[None].to(
            device, dtype
        )
        allowed_work = cv2.resize(allowed.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0
        # A latent cell may change if any of its pixels may: the final pixel copy restores the rest.
        latent_mask = F.max_pool2d(torch.from_numpy(allowed_work.astype(np.float32))[None, None], f).to(device, dtype)

        vae = self.backbone.vae
        clean = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        scheduler = self._new_scheduler()
        scheduler.set_timesteps(self.steps, device=device)
        n_denoise = min(int(self.steps * self.strength), self.steps)
        timesteps = scheduler.timesteps[self.steps - n_denoise :]

        generator = torch.Generator("cpu").manual_seed(int(request.seed))
        noise = torch.randn(clean.shape, generator=generator).to(device, dtype)
        latents = clean
        if len(timesteps):
            latents = scheduler.add_noise(clean, noise, timesteps[:1])
            text = self._text(self.prompt)
            if self.guidance_scale > 1.0:
                text = torch.cat([self._text(""), text])
                control = torch.cat([control, control])
            for i, t in enumerate(timesteps):
                out = self._predict(latents, t, text, control)
                latents = scheduler.step(out, t, latents, generator=generator).prev_sample
                if i + 1 < len(timesteps):
                    original = scheduler.add_noise(clean, noise, timesteps[i + 1 : i + 2])
                else:
                    original = clean
                latents = latent_mask * latents + (1.0 - latent_mask) * original

        decoded = vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)
        edited = (
            ((decoded[0].permute(1, 2, 0).float().cpu().numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
        )
        if (h, w) != (height, width):
            edited = cv2.resize(edited, (width, height), interpolation=cv2.INTER_CUBIC)
        return np.where(allowed[..., None], edited, frame).astype(np.uint8)

    def lineage(self) -> dict[str, Any]:
        """Backbone, checkpoint (path + sha256) and every sampling setting."""
        return {
            "editor": self.name,
            "backbone_id": self.backbone.id,
            "backbone": self.backbone.lineage,
            "checkpoint_path": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_weights_file": WEIGHTS_NAME,
            "steps": self.steps,
            "strength": self.strength,
            "guidance_scale": self.guidance_scale,
            "scheduler": self.scheduler_name,
            "conditioning_scale": self.conditioning_scale,
            "dtype": str(self.dtype),
            "device": str(self.device),
            "resolution": self.resolution,
            "prompt": self.prompt,
            "latent_blending": "outside allowed (max-pooled to latent cells) latents replaced each step by the original's, noised with the same noise",
        }
