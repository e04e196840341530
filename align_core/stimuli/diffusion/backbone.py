"""The frozen Stable Diffusion backbone and the ControlNet that conditions it on C_t.

Two kinds share one loading path. ``pretrained`` is a diffusers SD 1.5 directory (or hub id,
resolved from the local cache only when offline). ``tiny`` is a small random-initialised model
built from a config with a fixed seed and SAVED as a real diffusers directory, so tests and the
demo profile run exactly the ``from_pretrained`` code the research profile runs. Lineage says
plainly which one produced a result: a random tiny backbone is never passed off as trained.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from align_core.io.atomic import atomic_directory
from align_core.io.hashing import files_sha256

__all__ = [
    "Backbone",
    "CONTROL_CHANNELS",
    "SD15_SCHEDULER_CONFIG",
    "build_controlnet",
    "build_tiny_backbone",
    "load_backbone",
    "move_module",
    "tiny_tokenizer",
]

BackboneKind = Literal["pretrained", "tiny", "random"]
"""pretrained: real SD weights; tiny: small random saved directory; random: full-size random (benchmarks)."""

CONTROL_CHANNELS = 2
"""C_t = [M_t, S_t]: product mask and attention inside the mask."""

TINY_MARKER = "tiny_backbone.json"

# SD 1.5's noise schedule: the tiny backbone uses the same so training code paths match.
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (8, 16, 32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}

TINY_TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
}

# The conditioning embedding must downsample the pixel-resolution control by the VAE's factor
# (one stride-2 conv per entry after the first). SD's default has 4 entries = 8x; the tiny
# variant keeps 4 entries with fewer channels.
SD_CONDITIONING_CHANNELS: tuple[int, ...] = (16, 32, 96, 256)
TINY_CONDITIONING_CHANNELS: tuple[int, ...] = (8, 16, 32, 32)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode table (CLIP's BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=False))


def tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every byte is a token, nothing downloads."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_backbone(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Build the tiny random SD-shaped backbone from configs and save it as a diffusers directory.

    Written atomically (model_index.json + vae/unet/text_encoder/tokenizer/scheduler subfolders,
    safetensors weights) so ``load_backbone(directory, "tiny")`` exercises the real loaders.
    """
    directory = Path(directory)
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_TEXT_CONFIG,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    with atomic_directory(directory) as tmp:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        vae.save_pretrained(tmp / "vae", safe_serialization=True)
        text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "tokenizer")
        scheduler.save_pretrained(tmp / "scheduler")
        model_index = {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": _diffusers_version(),
            "vae": ["diffusers", "AutoencoderKL"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDPMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (tmp / "model_index.json").write_text(json.dumps(model_index, indent=2))
        marker = {
            "kind": "tiny",
            "seed": seed,
            "description": f"tiny random-initialised backbone built from config (seed {seed}), NOT pretrained",
        }
        (tmp / TINY_MARKER).write_text(json.dumps(marker, indent=2))
    return directory


def _diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


@dataclass
class Backbone:
    """The frozen parts of Stable Diffusion plus who they are (``id``, ``lineage``)."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    noise_scheduler: DDPMScheduler
    id: str
    kind: BackboneKind
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for SD)."""
        return int(2 ** (len(self.vae.config.block_out_channels) - 1))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Backbone":
        """Move the frozen modules (in place) and return self."""
        for module in (self.vae, self.unet, self.text_encoder):
            move_module(module, device, dtype)
        return self

    def freeze(self) -> "Backbone":
        """VAE, U-Net and text encoder never train: no grads, eval mode."""
        for module in (self.vae, self.unet, self.text_encoder):
            module.requires_grad_(False)
            module.eval()
        return self

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder hidden states ``(B, 77, D)`` for the U-Net's cross-attention."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]


def move_module(
    module: torch.nn.Module, device: str | torch.device, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """Move to ``device``; cast only when the dtype really changes (diffusers warns on every cast)."""
    module.to(device=device)
    current = next(module.parameters()).dtype
    if dtype is not None and current != dtype:
        module.to(dtype=dtype)
    return module


def _is_offline() -> bool:
    return any(
        os.environ.get(v, "") in ("1", "true", "True", "YES") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _weights_digest(path: Path) -> str | None:
    """sha256 over the safetensors weights of the loaded components (vae, unet, text_encoder).

    Other files in an SD directory (safety checker, fp16 variants) are not loaded, so not hashed.
    """
    if not path.is_dir():
        return None
    files = sorted(
        p
        for sub in ("text_encoder", "unet", "vae")
        for p in (path / sub).glob("*.safetensors")
        if ".fp16." not in p.name
    )
    if not files:
        return None
    return files_sha256(path, files)


def load_backbone(
    path_or_id: str | os.PathLike[str],
    kind: BackboneKind = "pretrained",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Backbone:
    """Load a diffusers SD directory (either kind) with each component's ``from_pretrained``.

    ``local_files_only`` is set when the path is a local directory or the hub is offline, so a
    missing model fails fast instead of downloading. The returned backbone is frozen.
    """
    if kind not in ("pretrained", "tiny"):
        raise ValueError(f"load_backbone loads 'pretrained' or 'tiny' directories, not {kind!r}")
    source = str(path_or_id)
    local = Path(source).is_dir()
    kwargs: dict[str, Any] = {"local_files_only": local or _is_offline()}
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs)
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs)
    text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs)
    tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
    noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)

    lineage: dict[str, Any] = {"source": source, "kind": kind}
    if kind == "tiny":
        marker_path = Path(source) / TINY_MARKER
        if not marker_path.is_file():
            raise ValueError(f"{source} is not a tiny backbone built by build_tiny_backbone (no {TINY_MARKER})")
        marker = json.loads(marker_path.read_text())
        lineage.update(pretrained=False, seed=marker["seed"], description=marker["description"])
        backbone_id = f"tiny-sd-random-seed{marker['seed']}"
    else:
        if local and (Path(source) / TINY_MARKER).is_file():
            raise ValueError(f"{source} is a tiny random backbone; load it with kind='tiny'")
        lineage.update(pretrained=True, description=f"pretrained Stable Diffusion backbone from {source}")
        backbone_id = source
    digest = _weights_digest(Path(source)) if local else None
    if digest is not None:
        lineage["weights_sha256"] = digest
        backbone_id = f"{backbone_id}@{digest[:12]}"
    backbone = Backbone(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=noise_scheduler,
        id=backbone_id,
        kind=kind,
        lineage=lineage,
    )
    return backbone.to(device, dtype).freeze()


def conditioning_channels_for(backbone: Backbone) -> tuple[int, ...]:
    """Conditioning-embedding widths whose stride-2 count matches the VAE's downsampling.

    The control image arrives at pixel resolution; the embedding must reach latent resolution.
    """
    n_down = int(math.log2(backbone.vae_scale_factor))
    # Width, not provenance, decides: a full-size random model (benchmarks) gets SD's embedding.
    full_size = backbone.unet.config.block_out_channels[0] >= 320
    base = SD_CONDITIONING_CHANNELS if full_size else TINY_CONDITIONING_CHANNELS
    if len(base) - 1 != n_down:
        raise ValueError(
            f"conditioning embedding {base} downsamples {2 ** (len(base) - 1)}x, VAE {backbone.vae_scale_factor}x"
        )
    return base


def build_controlnet(backbone: Backbone, seed: int = 0) -> ControlNetModel:
    """A ControlNet copied from the backbone's U-Net encoder, taking the 2-channel C_t.

    Output convs are zero-initialised (diffusers' ``from_unet``), so before training it leaves
    the U-Net's prediction unchanged; its residuals enter the down and mid blocks.
    """
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(
        backbone.unet,
        conditioning_channels=CONTROL_CHANNELS,
        conditioning_embedding_out_channels=conditioning_channels_for(backbone),
    )
    return move_module(controlnet, backbone.device, torch.float32)
