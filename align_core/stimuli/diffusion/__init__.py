"""ControlNet on a frozen Stable Diffusion backbone: models, LPIPS, data, losses, training, checkpoints.

The ControlNet takes the 2-channel control C_t = [M_t, S_t] and its residuals enter the U-Net's
down and mid blocks. Every loss term (diffusion, reconstruction on the decoded x0_hat, background)
sends gradient to it; checkpoints are safetensors + JSON only.
"""

from align_core.stimuli.diffusion.backbone import Backbone, build_controlnet, build_tiny_backbone, load_backbone
from align_core.stimuli.diffusion.checkpoint import latest_checkpoint, load_controlnet
from align_core.stimuli.diffusion.dataset import ControlSample, TrainingSet, build_training_set, split_by_video
from align_core.stimuli.diffusion.losses import LossWeights, controlnet_losses
from align_core.stimuli.diffusion.lpips_alex import LPIPS
from align_core.stimuli.diffusion.train import ControlNetTrainer, TrainConfig, TrainResult, train_controlnet

__all__ = [
    "LPIPS",
    "Backbone",
    "ControlNetTrainer",
    "ControlSample",
    "LossWeights",
    "TrainConfig",
    "TrainResult",
    "TrainingSet",
    "build_controlnet",
    "build_tiny_backbone",
    "build_training_set",
    "controlnet_losses",
    "latest_checkpoint",
    "load_backbone",
    "load_controlnet",
    "split_by_video",
    "train_controlnet",
]
