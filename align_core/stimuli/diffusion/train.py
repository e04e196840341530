"""Train the 2-channel ControlNet on a frozen Stable Diffusion backbone.

AdamW with warm-up then cosine decay, gradient clipping, optional EMA, and (on CUDA only)
gradient checkpointing. Mixed precision, gradient accumulation, loss scaling and clipping run
through ``accelerate``'s ``Accelerator`` (``prepare``, ``accumulate``, ``backward``,
``clip_grad_norm_``, ``autocast``), as diffusers' own ControlNet training does. Validation uses
fixed timesteps and fixed noise seeds, so validation losses of different checkpoints are comparable.

Checkpoints are NOT written with ``Accelerator.save_state``: it pickles the optimizer, scheduler
and RNG states (``torch.save``) and loads registered objects with ``weights_only=False``, so a
tampered checkpoint could run code. They stay pickle-free (safetensors + JSON, see
:mod:`align_core.stimuli.diffusion.checkpoint`) and carry every piece of state a resumed run needs to end
bit-identical to an uninterrupted one on CPU: weights, optimizer, LR schedule, the accelerator's
loss scaler, EMA, the training generator and the data order.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from diffusers import ControlNetModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file
from tqdm.auto import tqdm

from align_core.io.atomic import atomic_directory
from align_core.io.hashing import file_sha256
from align_core.stimuli.diffusion.backbone import Backbone, build_controlnet, move_module
from align_core.stimuli.diffusion.checkpoint import (
    CHECKPOINT_PREFIX,
    WEIGHTS_NAME,
    latest_checkpoint,
    load_state,
    prune_checkpoints,
    save_state,
)
from align_core.stimuli.diffusion.dataset import TrainingSet
from align_core.stimuli.diffusion.losses import LossWeights, controlnet_losses
from align_core.stimuli.diffusion.lpips_alex import LPIPS

__all__ = [
    "ControlNetTrainer",
    "TrainConfig",
    "TrainResult",
    "train_controlnet",
]

LOSS_KEYS = ("loss", "diff", "recon", "l1", "lpips", "bg")
# Fields that may change between an interrupted run and its resumption without changing the
# optimisation trajectory.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "keep_last", "validate_every", "device"})


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a ControlNet training run (stored in each checkpoint)."""

    max_steps: int = 5000
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    warmup_steps: int = 500
    max_grad_norm: float = 1.0
    lambda_recon: float = 0.1
    lambda_lpips: float = 1.0
    lambda_bg: float = 0.1
    mixed_precision: Literal["no", "fp16", "bf16"] = "bf16"
    gradient_checkpointing: bool = True
    use_ema: bool = False
    ema_decay: float = 0.9999
    checkpoint_every: int = 500
    keep_last: int = 3
    validate_every: int = 500
    val_timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)
    val_noise_seed: int = 1234
    seed: int = 0
    device: str = "cpu"
    lpips_alexnet_path: str | None = None

    def loss_weights(self) -> LossWeights:
        return LossWeights(self.lambda_recon, self.lambda_lpips, self.lambda_bg)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["val_timesteps"] = list(self.val_timesteps)
        return d


@dataclass
class TrainResult:
    """What a run produced: the exported (or latest) checkpoint and its provenance."""

    checkpoint_dir: Path
    weights_sha256: str
    loss_history: list[dict[str, float]]
    validation: list[dict[str, float]]
    lineage: dict[str, Any]
    completed: bool = True
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ControlNetTrainer:
    """One ControlNet, its optimiser state and its RNG; ``train_step`` is one optimiser step.

    The backbone is frozen and moved in place to the device (cast to the AMP dtype on CUDA:
    frozen weights need no fp32 master copy); the ControlNet trains in fp32 and is prepared with
    its optimizer and schedule by the ``Accelerator``, which owns mixed precision (CUDA only),
    gradient accumulation and the fp16 loss scaler.
    """

    def __init__(self, backbone: Backbone, controlnet: ControlNetModel, config: TrainConfig, lpips: LPIPS) -> None:
        self.backbone = backbone
        self.controlnet = controlnet
        self.config = config
        self.lpips = lpips
        self.device = torch.device(config.device)
        on_cuda = self.device.type == "cuda"
        amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision)
        self.amp_dtype: torch.dtype | None = amp if on_cuda else None
        backbone.freeze()
        backbone.to(self.device, self.amp_dtype or torch.float32)
        move_module(controlnet, self.device, torch.float32)
        controlnet.train()
        lpips.to(self.device)
        self.gradient_checkpointing = bool(on_cuda and config.gradient_checkpointing)
        if self.gradient_checkpointing:
            controlnet.enable_gradient_checkpointing()
            backbone.unet.enable_gradient_checkpointing()
            backbone.vae.enable_gradient_checkpointing()
        self.params = [p for p in controlnet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.adam_weight_decay,
            eps=config.adam_epsilon,
        )
        self.lr_scheduler = get_cosine_schedule_with_warmup(self.optimizer, config.warmup_steps, config.max_steps)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision if self.amp_dtype is not None else "no",
            gradient_accumulation_steps=max(1, config.gradient_accumulation_steps),
            cpu=not on_cuda,
            device_placement=False,  # placed above: the frozen backbone is not prepared
        )
        self.controlnet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            controlnet, self.optimizer, self.lr_scheduler
        )
        self.ema: EMAModel | None = None
        if config.use_ema:
            self.ema = EMAModel(
                self.params, decay=config.ema_decay, model_cls=ControlNetModel, model_config=controlnet.config
            )
            self.ema.to(self.device)
        self.generator = torch.Generator("cpu").manual_seed(config.seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.order_pos = 0
        self.step = 0
        self.loss_history: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []

    # --- data -------------------------------------------------------------------------------
    def _next_indices(self, n: int, batch_size: int) -> list[int]:
        """Sample without replacement within an epoch, reshuffling with the seeded generator."""
        out: list[int] = []
        while len(out) < batch_size:
            if self.order_pos >= len(self.order):
                self.order = torch.randperm(n, generator=self.generator)
                self.order_pos = 0
            out.append(int(self.order[self.order_pos]))
            self.order_pos += 1
        return out

    def _text_states(self, data: TrainingSet, prompts: list[str]) -> torch.Tensor:
        if all(p in data.prompt_embeddings for p in prompts):
            return data.embed(prompts).to(self.device)
        return self.backbone.encode_prompts(prompts).float()

    def _losses(
        self, data: TrainingSet, idx: list[int], prompts: list[str], noise: torch.Tensor, timesteps: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        with self.accelerator.autocast():
            return controlnet_losses(
                self.backbone,
                self.controlnet,
                self.lpips,
                latents=data.latents[idx].to(self.device),
                pixels=data.pixels[idx].to(self.device),
                controls=data.controls[idx].to(self.device),
                text_states=self._text_states(data, prompts),
                noise=noise.to(self.device),
                timesteps=timesteps.to(self.device),
                weights=self.config.loss_weights(),
            )

    # --- optimisation -----------------------------------------------------------------------
    def train_step(self, data: TrainingSet) -> dict[str, float]:
        """One optimiser step over ``gradient_accumulation_steps`` micro-batches (``Accelerator.accumulate``)."""
        cfg = self.config
        started = time.perf_counter()
        sums = {k: 0.0 for k in LOSS_KEYS}
        accum = max(1, cfg.gradient_accumulation_steps)
        num_timesteps = int(self.backbone.noise_scheduler.config.num_train_timesteps)
        lr = float(self.optimizer.param_groups[0]["lr"])
        for _ in range(accum):
            idx = self._next_indices(len(data), cfg.batch_size)
            prompts = data.draw_prompts(idx, self.generator)
            noise = torch.randn(data.latents[idx].shape, generator=self.generator)
            timesteps = torch.randint(0, num_timesteps, (len(idx),), generator=self.generator)
            with self.accelerator.accumulate(self.controlnet):
                losses = self._losses(data, idx, prompts, noise, timesteps)
                self.accelerator.backward(losses["loss"])  # divided by the accumulation steps
                for k in LOSS_KEYS:
                    sums[k] += float(losses[k].detach()) / accum
                if self.accelerator.sync_gradients:
                    grad_norm = self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        if not self.accelerator.sync_gradients:
            raise RuntimeError(f"accumulation out of step: {accum} micro-batches did not end on an optimizer step")
        if self.ema is not None:
            self.ema.step(self.params)
        self.step += 1
        record = {
            "step": self.step,
            **sums,
            "grad_norm": float(grad_norm),
            "lr": lr,
            "seconds": time.perf_counter() - started,
        }
        self.loss_history.append(record)
        return record

    @torch.no_grad()
    def validate(self, data: TrainingSet, batch_size: int | None = None) -> dict[str, float]:
        """Mean losses over every sample x each fixed timestep with fixed noise (EMA weights if any)."""
        cfg = self.config
        batch_size = batch_size or cfg.batch_size
        generator = torch.Generator("cpu").manual_seed(cfg.val_noise_seed)
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)
        self.controlnet.eval()
        try:
            sums = {k: 0.0 for k in LOSS_KEYS}
            count = 0
            for t in cfg.val_timesteps:
                for start in range(0, len(data), batch_size):
                    idx = list(range(start, min(len(data), start + batch_size)))
                    noise = torch.randn(data.latents[idx].shape, generator=generator)
                    timesteps = torch.full((len(idx),), int(t), dtype=torch.int64)
                    losses = self._losses(data, idx, data.draw_prompts(idx, None), noise, timesteps)
                    for k in LOSS_KEYS:
                        sums[k] += float(losses[k]) * len(idx)
                    count += len(idx)
        finally:
            self.controlnet.train()
            if self.ema is not None:
                self.ema.restore(self.params)
        record = {"step": self.step, **{k: v / max(1, count) for k, v in sums.items()}}
        self.validation.append(record)
        return record

    # --- state ------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoints_dir: Path, lineage: dict[str, Any]) -> Path:
        """Write ``step-XXXXXXXX/`` atomically (safetensors + JSON only) and return it."""
        target = checkpoints_dir / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        with atomic_directory(target) as tmp:
            self.controlnet.save_pretrained(tmp / "controlnet", safe_serialization=True)
            save_state(tmp, "optimizer", self.optimizer.state_dict())
            save_state(tmp, "lr_scheduler", self.lr_scheduler.state_dict())
            save_state(tmp, "scaler", self._scaler_state())
            if self.ema is not None:
                save_state(tmp, "ema", self.ema.state_dict())
            rng: dict[str, Any] = {
                "generator": self.generator.get_state(),
                "torch_cpu": torch.get_rng_state(),
                "order": self.order,
                "order_pos": self.order_pos,
            }
            if torch.cuda.is_available():
                rng["cuda"] = torch.cuda.get_rng_state_all()
            save_state(tmp, "rng", rng)
            state = {
                "step": self.step,
                "config": self.config.to_json(),
                "loss_history": self.loss_history,
                "validation": self.validation,
                "weights_sha256": file_sha256(tmp / "controlnet" / WEIGHTS_NAME),
                "lineage": lineage,
            }
            (tmp / "training_state.json").write_text(json.dumps(state, indent=2))
        return target

    def _scaler_state(self) -> dict[str, Any]:
        """The accelerator's fp16 loss scaler state (empty when there is none: fp32 or bf16)."""
        return self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else {}

    def load_checkpoint(self, checkpoint: Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; refuse a different configuration."""
        state = json.loads((checkpoint / "training_state.json").read_text())
        saved, current = state["config"], self.config.to_json()
        changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
        if changed:
            raise ValueError(f"cannot resume {checkpoint}: config differs in {changed}")
        weights = load_file(str(checkpoint / "controlnet" / WEIGHTS_NAME), device=str(self.device))
        self.controlnet.load_state_dict(weights, strict=True)
        self.optimizer.load_state_dict(load_state(checkpoint, "optimizer"))
        self.lr_scheduler.load_state_dict(load_state(checkpoint, "lr_scheduler"))
        scaler = load_state(checkpoint, "scaler")
        if self.accelerator.scaler is not None and scaler:
            self.accelerator.scaler.load_state_dict(scaler)
        if self.ema is not None:
            self.ema.load_state_dict(load_state(checkpoint, "ema", device=self.device))
        rng = load_state(checkpoint, "rng")
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch_cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(rng["cuda"]))
        self.order = rng["order"]
        self.order_pos = int(rng["order_pos"])
        self.step = int(state["step"])
        self.loss_history = list(state["loss_history"])
        self.validation = list(state["validation"])


def _lineage(
    backbone: Backbone, lpips: LPIPS, train_set: TrainingSet, val_set: TrainingSet | None, config: TrainConfig
) -> dict[str, Any]:
    import accelerate
    import diffusers

    warnings = []
    if backbone.kind != "pretrained":
        warnings.append(
            f"backbone is a {backbone.kind} random-initialised model: the ControlNet is a plumbing test, not an editor"
        )
    if not lpips.pretrained:
        warnings.append(lpips.backbone_state)
    return {
        "backbone_id": backbone.id,
        "backbone": backbone.lineage,
        "controlnet_init": f"ControlNetModel.from_unet({backbone.id}, conditioning_channels=2), zero-initialised output convs",
        "lpips_backbone": lpips.backbone_state,
        "lpips_linear": lpips.linear_weights,
        "train_set": {
            **train_set.info,
            "videos": sorted(set(train_set.video_ids)),
            "resolution": list(train_set.resolution),
        },
        "val_set": None if val_set is None else {**val_set.info, "videos": sorted(set(val_set.video_ids))},
        "config": config.to_json(),
        "seed": config.seed,
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "accelerate": accelerate.__version__,
            "python": platform.python_version(),
        },
        "warnings": warnings,
    }


def train_controlnet(
    backbone: Backbone,
    train_set: TrainingSet,
    val_set: TrainingSet | None,
    config: TrainConfig,
    output_dir: str | os.PathLike[str],
    resume: bool = True,
    progress: bool = True,
    controlnet: ControlNetModel | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) a ControlNet and export ``output_dir/final``.

    Checkpoints go to ``output_dir/checkpoints/step-*`` every ``checkpoint_every`` optimiser
    steps, keeping the last ``keep_last``; with ``resume`` the newest one is continued.
    ``stop_after`` ends the run after that many total steps WITHOUT saving, as a kill would
    (tests use it to prove resumption); the result then points at the latest checkpoint.
    The final export holds ``controlnet/`` (EMA weights when EMA is on) and ``training_state.json``.
    """
    output_dir = Path(output_dir)
    checkpoints_dir = output_dir / "checkpoints"
    if controlnet is None:
        controlnet = build_controlnet(backbone, seed=config.seed)
    lpips = LPIPS(config.lpips_alexnet_path)
    trainer = ControlNetTrainer(backbone, controlnet, config, lpips)
    lineage = _lineage(backbone, lpips, train_set, val_set, config)
    latest = latest_checkpoint(checkpoints_dir) if resume else None
    if latest is not None:
        trainer.load_checkpoint(latest)
        lineage["resumed_from"] = str(latest)
    elif val_set is not None and len(val_set):
        trainer.validate(val_set)

    if not _train_until(trainer, train_set, val_set, checkpoints_dir, lineage, progress, stop_after):
        latest = latest_checkpoint(checkpoints_dir)
        sha = file_sha256(latest / "controlnet" / WEIGHTS_NAME) if latest else ""
        return TrainResult(
            latest or checkpoints_dir,
            sha,
            trainer.loss_history,
            trainer.validation,
            lineage,
            completed=False,
            steps=trainer.step,
        )
    if (
        val_set is not None
        and len(val_set)
        and (not trainer.validation or trainer.validation[-1]["step"] != trainer.step)
    ):
        trainer.validate(val_set)
    final = output_dir / "final"
    sha = _export_final(trainer, controlnet, config, lineage, final)
    return TrainResult(
        final, sha, trainer.loss_history, trainer.validation, lineage, completed=True, steps=trainer.step
    )


def _train_until(
    trainer: ControlNetTrainer,
    train_set: TrainingSet,
    val_set: TrainingSet | None,
    checkpoints_dir: Path,
    lineage: dict[str, Any],
    progress: bool,
    stop_after: int | None,
) -> bool:
    """Optimiser steps up to ``max_steps``, validating and checkpointing on schedule.

    False when ``stop_after`` ended the run first (nothing saved, as a kill would).
    """
    config = trainer.config
    bar = tqdm(total=config.max_steps, initial=trainer.step, disable=not progress, desc="controlnet", unit="step")
    try:
        while trainer.step < config.max_steps:
            if stop_after is not None and trainer.step >= stop_after:
                return False
            record = trainer.train_step(train_set)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"non-finite loss at step {trainer.step}: {record}")
            if (
                val_set is not None
                and len(val_set)
                and config.validate_every
                and trainer.step % config.validate_every == 0
            ):
                trainer.validate(val_set)
            if config.checkpoint_every and trainer.step % config.checkpoint_every == 0:
                trainer.save_checkpoint(checkpoints_dir, lineage)
                prune_checkpoints(checkpoints_dir, config.keep_last)
    finally:
        bar.close()
    return True


def _export_final(
    trainer: ControlNetTrainer, controlnet: ControlNetModel, config: TrainConfig, lineage: dict[str, Any], final: Path
) -> str:
    """Write ``final/controlnet`` (EMA weights when EMA is on) and ``training_state.json``; the weights' sha256."""
    with atomic_directory(final) as tmp:
        if trainer.ema is not None:
            trainer.ema.store(trainer.params)
            trainer.ema.copy_to(trainer.params)
        try:
            controlnet.save_pretrained(tmp / "controlnet", safe_serialization=True)
        finally:
            if trainer.ema is not None:
                trainer.ema.restore(trainer.params)
        sha = file_sha256(tmp / "controlnet" / WEIGHTS_NAME)
        state = {
            "step": trainer.step,
            "weights": "ema" if trainer.ema is not None else "raw",
            "weights_sha256": sha,
            "config": config.to_json(),
            "loss_history": trainer.loss_history,
            "validation": trainer.validation,
            "lineage": lineage,
        }
        (tmp / "training_state.json").write_text(json.dumps(state, indent=2))
    return sha
