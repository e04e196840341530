"""ControlNet training losses; every term reaches the ControlNet's parameters.

L = L_diff + lambda_recon * (L1 + lambda_lpips * LPIPS) + lambda_bg * L_bg

- L_diff: MSE on the scheduler's prediction target (epsilon or v, per its config).
- L_recon: on the DECODED predicted clean image x0_hat. x0_hat comes from the noisy latent and
  the ControlNet-conditioned U-Net output through the scheduler's alphas, and is decoded by the
  frozen VAE with autograd on, so gradient flows back through the decoder and the U-Net into the
  ControlNet (frozen modules get no .grad because their parameters do not require it).
- L_bg: the mean squared change outside M_t per background pixel and channel.
The original research code computed the last two on detached tensors; here a test proves they
send gradient to the ControlNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel

from align_core.stimuli.diffusion.backbone import Backbone
from align_core.stimuli.diffusion.lpips_alex import LPIPS

__all__ = [
    "LossWeights",
    "background_loss",
    "controlnet_losses",
]


@dataclass(frozen=True)
class LossWeights:
    """The lambdas of the total loss."""

    lambda_recon: float = 0.1
    lambda_lpips: float = 1.0
    lambda_bg: float = 0.1


def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net is trained to predict under this scheduler's ``prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {kind!r}")


def predicted_clean_latents(
    scheduler, noisy_latents: torch.Tensor, model_output: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """x0_hat in latent space from x_t and the model output, through the scheduler's alphas."""
    alphas = scheduler.alphas_cumprod.to(device=noisy_latents.device, dtype=torch.float32)[timesteps]
    a = alphas.view(-1, 1, 1, 1)
    sqrt_a, sqrt_1ma = a.sqrt(), (1.0 - a).sqrt()
    x_t, out = noisy_latents.float(), model_output.float()
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (x_t - sqrt_1ma * out) / sqrt_a
    if kind == "v_prediction":
        return sqrt_a * x_t - sqrt_1ma * out
    raise ValueError(f"unsupported prediction_type {kind!r}")


def background_loss(x0_hat: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared change outside the product mask, per background pixel and channel.

    sum((1-M) * (x0_hat - x)^2) / (C * sum(1-M)); zero when there is no background.
    """
    background = (1.0 - mask.float()).unsqueeze(1)  # (B,1,H,W)
    squared = (x0_hat.float() - frames.float()) ** 2
    denom = (background.sum() * x0_hat.shape[1]).clamp_min(1.0)
    return (background * squared).sum() / denom


def reconstruction_loss(
    x0_hat: torch.Tensor, frames: torch.Tensor, lpips: LPIPS, lambda_lpips: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L1 + lambda_lpips * LPIPS, L1, LPIPS) between decoded x0_hat and the frame, both in [-1,1]."""
    l1 = F.l1_loss(x0_hat.float(), frames.float())
    perceptual = lpips(x0_hat.float().clamp(-1, 1), frames.float()).mean()
    return l1 + lambda_lpips * perceptual, l1, perceptual


def controlnet_losses(
    backbone: Backbone,
    controlnet: ControlNetModel,
    lpips: LPIPS,
    latents: torch.Tensor,
    pixels: torch.Tensor,
    controls: torch.Tensor,
    text_states: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """All loss terms for one batch; ``loss`` is the weighted total to backpropagate.

    latents: clean latents (scaled); pixels: frames in [-1,1]; controls: C_t at pixel size.
    """
    scheduler = backbone.noise_scheduler
    unet_dtype = next(backbone.unet.parameters()).dtype
    noisy = scheduler.add_noise(latents, noise, timesteps)
    down, mid = controlnet(
        noisy.to(controlnet.dtype),
        timesteps,
        encoder_hidden_states=text_states.to(controlnet.dtype),
        controlnet_cond=controls.to(controlnet.dtype),
        return_dict=False,
    )
    model_output = backbone.unet(
        noisy.to(unet_dtype),
        timesteps,
        encoder_hidden_states=text_states.to(unet_dtype),
        down_block_additional_residuals=[r.to(unet_dtype) for r in down],
        mid_block_additional_residual=mid.to(unet_dtype),
        return_dict=False,
    )[0]
    target = prediction_target(scheduler, latents, noise, timesteps)
    l_diff = F.mse_loss(model_output.float(), target.float())

    x0_latents = predicted_clean_latents(scheduler, noisy, model_output, timesteps)
    vae_dtype = next(backbone.vae.parameters()).dtype
    x0_hat = backbone.vae.decode((x0_latents / backbone.vae.config.scaling_factor).to(vae_dtype)).sample.float()
    l_recon, l1, perceptual = reconstruction_loss(x0_hat, pixels, lpips, weights.lambda_lpips)
    l_bg = background_loss(x0_hat, pixels, controls[:, 0])

    total = l_diff + weights.lambda_recon * l_recon + weights.lambda_bg * l_bg
    return {"loss": total, "diff": l_diff, "recon": l_recon, "l1": l1, "lpips": perceptual, "bg": l_bg}
