"""LPIPS (AlexNet variant) in plain torch, without importing torchvision or the lpips module.

torchvision cannot be installed next to the CPU torch here, and the ``lpips`` module imports it.
The lpips *package* still ships the real learned linear weights (``weights/v0.1/alex.pth``); we
read that file directly. The AlexNet backbone mirrors ``torchvision.models.alexnet().features``
layer for layer so the standard ``features.N.weight`` state dict loads into it from a local
file. Without such a file the backbone is random, drawn from a fixed seed
(:data:`RANDOM_BACKBONE_SEED`) so the values are identical across runs and processes, and
``backbone_state`` says so loudly: the values are then a seeded random-feature distance, NOT a
perceptual one.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from align_core.io.video_io import file_sha256

DEFAULT_ALEXNET_PATHS: tuple[str, ...] = (
    "data/models/alexnet/alexnet-owt-7be5be79.pth",
    "data/models/alexnet/alexnet.safetensors",
)
"""Where a local torchvision AlexNet state dict is looked for (relative to the cwd)."""

ALEXNET_ENV = "ALIGN_ALEXNET_WEIGHTS"
LPIPS_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)
RANDOM_BACKBONE_SEED = 20240617
"""Seed of the random AlexNet backbone used when no weights file is found (values stay comparable)."""


def lpips_linear_weights_path() -> Path:
    """The lpips package's real v0.1 AlexNet linear weights, found without importing lpips."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lpips package (0.1.4, installed --no-deps) is required for its linear weights")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS linear weights missing at {path}")
    return path


def seed_random_backbone(net: nn.Module, seed: int = RANDOM_BACKBONE_SEED) -> None:
    """Redraw every conv layer from ``seed`` (torch's default init), leaving the global RNG alone.

    Without this the random backbone came from whatever state the global RNG was in, so LPIPS
    values changed from run to run and could not be compared.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) as nn.Conv2d uses
                layer.weight.uniform_(-bound, bound, generator=generator)
                if layer.bias is not None:
                    layer.bias.uniform_(-bound, bound, generator=generator)


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` layout, so its state dict keys load unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        # LPIPS taps relu1..relu5: the outputs after layers 1, 4, 7, 9, 11.
        self._taps = (1, 4, 7, 9, 11)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the five ReLU activations LPIPS compares."""
        outputs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._taps:
                outputs.append(x)
            if i == self._taps[-1]:
                break
        return outputs


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


class LPIPS(nn.Module):
    """LPIPS distance between images in [-1, 1]; frozen; gradients flow to the inputs.

    ``backbone_state`` records whether the AlexNet features are pretrained (with the file's
    sha256) or random, so every loss it feeds can say which.
    """

    def __init__(self, alexnet_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

        linear_path = lpips_linear_weights_path()
        linear = torch.load(str(linear_path), map_location="cpu", weights_only=True)
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(linear[f"lin{i}.model.1.weight"])
        self.linear_weights = f"lpips-v0.1-alex:{file_sha256(linear_path)}"

        candidates: list[Path] = []
        if alexnet_path is not None:
            candidates.append(Path(alexnet_path))
        else:
            if os.environ.get(ALEXNET_ENV):
                candidates.append(Path(os.environ[ALEXNET_ENV]))
            candidates.extend(Path(p) for p in DEFAULT_ALEXNET_PATHS)
        found = next((p for p in candidates if p.is_file()), None)
        if found is not None:
            state = _load_state_file(found)
            features = {k: v for k, v in state.items() if k.startswith("features.")}
            self.net.load_state_dict(features, strict=True)
            self.backbone_state = f"pretrained-alexnet:{file_sha256(found)}"
            self.pretrained = True
        else:
            seed_random_backbone(self.net)
            where = ", ".join(str(p) for p in candidates)
            self.backbone_state = (
                f"random-alexnet: random-feature (seeded {RANDOM_BACKBONE_SEED}) distance, no local AlexNet"
                f" weights found at {where}; LPIPS values are NOT perceptual"
            )
            self.pretrained = False
            warnings.warn(self.backbone_state, stacklevel=2)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS ``(B,)`` between ``x`` and ``y`` (both ``(B,3,H,W)`` in [-1, 1])."""
        lpips_input_check(x)
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for a, b, lin in zip(fx, fy, self.lins, strict=False):
            na = a / (torch.sqrt(torch.sum(a * a, dim=1, keepdim=True)) + 1e-10)
            nb = b / (torch.sqrt(torch.sum(b * b, dim=1, keepdim=True)) + 1e-10)
            total = total + lin((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total

    def train(self, mode: bool = True) -> "LPIPS":
        """LPIPS is a fixed metric: it always stays in eval mode."""
        return super().train(False)


def lpips_input_check(x: torch.Tensor) -> None:
    """Raise if images are not ``(B,3,H,W)`` large enough for AlexNet's five taps."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"LPIPS expects (B,3,H,W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < 32:
        raise ValueError(f"LPIPS needs at least 32 px, got {tuple(x.shape[-2:])}")


__all__ = [
    "LPIPS",
    "RANDOM_BACKBONE_SEED",
    "AlexNetFeatures",
    "lpips_linear_weights_path",
    "seed_random_backbone",
]
