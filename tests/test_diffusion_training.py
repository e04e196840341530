"""ControlNet training: gradients from every loss term, learning, exact resume, pickle-free checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from align_core.stimuli.diffusion.backbone import Backbone, build_controlnet, build_tiny_backbone, load_backbone
from align_core.stimuli.diffusion.checkpoint import load_controlnet, load_state, pickle_files
from align_core.stimuli.diffusion.dataset import ControlSample, TrainingSet, build_training_set, split_by_video
from align_core.stimuli.diffusion.losses import LossWeights, background_loss, controlnet_losses
from align_core.stimuli.diffusion.lpips_alex import LPIPS
from align_core.stimuli.diffusion.train import TrainConfig, train_controlnet

pytestmark = pytest.mark.filterwarnings("ignore:random-alexnet")


def _sample(video: str, k: int, size: int = 64) -> ControlSample:
    """A structured frame (gradient background + a coloured product box) and its control."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frame = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1) * 200
    mask = np.zeros((size, size), np.float32)
    y0, x0 = 12 + 4 * k, 16 + 3 * k
    mask[y0 : y0 + 24, x0 : x0 + 20] = 1
    frame[mask > 0] = (220, 40 + 20 * k, 30)
    attention = np.exp(-(((xx - 0.5) ** 2 + (yy - 0.45) ** 2) / 0.05)).astype(np.float32)
    return ControlSample(frame.astype(np.uint8), np.stack([mask, attention * mask]), "red bottle", video)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Backbone:
    path = build_tiny_backbone(tmp_path_factory.mktemp("bb") / "tiny-sd", seed=0)
    return load_backbone(path, "tiny")


@pytest.fixture(scope="module")
def data(backbone: Backbone) -> TrainingSet:
    return build_training_set([_sample("v1", 0), _sample("v2", 1)], 64, backbone.vae, backbone.encode_prompts)


def test_split_is_by_video_and_latents_are_cached(backbone: Backbone) -> None:
    samples = [_sample(f"v{v}", f % 3) for v in range(5) for f in range(3)]
    train, val = split_by_video(samples, 0.4, seed=1)
    assert {s.video_id for s in train}.isdisjoint({s.video_id for s in val})
    assert len({s.video_id for s in val}) == 2 and len(train) + len(val) == len(samples)
    assert split_by_video(samples, 0.4, seed=1) == (train, val)
    ts = build_training_set(samples[:2], (48, 32), backbone.vae, backbone.encode_prompts)
    assert ts.pixels.shape == (2, 3, 48, 32) and ts.latents.shape == (2, 4, 6, 4)
    assert set(ts.prompt_embeddings) == {"red bottle", ""}
    drawn = [ts.draw_prompts([0, 1], torch.Generator().manual_seed(s)) for s in range(20)]
    flat = [p for d in drawn for p in d]
    assert "" in flat and "red bottle" in flat
    assert drawn[3] == ts.draw_prompts([0, 1], torch.Generator().manual_seed(3))


def test_background_loss_is_per_background_pixel_and_channel() -> None:
    x = torch.zeros(1, 3, 4, 4)
    x0 = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[:, :2] = 1  # top half is product
    x0[:, :, 2:] = 2.0  # every background value changed by 2
    x0[:, :, :2] = 100.0  # changes inside the mask are not background
    assert float(background_loss(x0, x, mask)) == pytest.approx(4.0)
    assert float(background_loss(x0, x, torch.ones(1, 4, 4))) == 0.0


def _batch(data: TrainingSet, backbone: Backbone) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "latents": data.latents,
        "pixels": data.pixels,
        "controls": data.controls,
        "text_states": data.embed(data.prompts),
        "noise": torch.randn(data.latents.shape, generator=g),
        "timesteps": torch.tensor([150, 400]),
    }


def test_every_loss_term_sends_gradient_to_the_controlnet_only(backbone: Backbone, data: TrainingSet) -> None:
    lpips = LPIPS()
    frozen = [
        *backbone.unet.parameters(),
        *backbone.vae.parameters(),
        *backbone.text_encoder.parameters(),
        *lpips.parameters(),
    ]
    for perturbed in (False, True):
        controlnet = build_controlnet(backbone)
        if perturbed:  # after training starts the zero convs are non-zero: the whole branch must be live
            with torch.no_grad():
                g = torch.Generator().manual_seed(1)
                for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
                    conv.weight.add_(1e-2 * torch.randn(conv.weight.shape, generator=g))
        losses = controlnet_losses(backbone, controlnet, lpips, weights=LossWeights(), **_batch(data, backbone))
        for term in ("diff", "recon", "bg"):
            controlnet.zero_grad(set_to_none=True)
            losses[term].backward(retain_graph=True)
            zero_convs = [
                p.grad
                for m in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
                for p in m.parameters()
            ]
            assert sum(float(g.norm()) for g in zero_convs if g is not None) > 0, term
            if perturbed:
                embedding = [p.grad for p in controlnet.controlnet_cond_embedding.parameters()]
                assert all(g is not None for g in embedding) and sum(float(g.norm()) for g in embedding) > 0, term
            assert all(p.grad is None for p in frozen), term


def _config(**kw: object) -> TrainConfig:
    base = dict(
        max_steps=6,
        batch_size=2,
        learning_rate=2e-3,
        warmup_steps=1,
        checkpoint_every=2,
        keep_last=2,
        validate_every=0,
        val_timesteps=(300, 700),
        mixed_precision="no",
        use_ema=True,
        ema_decay=0.9,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_loss_falls_on_a_fixed_tiny_batch(backbone: Backbone, data: TrainingSet, tmp_path: Path) -> None:
    cfg = _config(max_steps=30, checkpoint_every=0, validate_every=0, use_ema=False, learning_rate=3e-3, warmup_steps=2)
    result = train_controlnet(backbone, data, data, cfg, tmp_path, resume=False, progress=False)
    first, last = result.validation[0], result.validation[-1]
    assert first["step"] == 0 and last["step"] == 30
    assert last["loss"] < 0.9 * first["loss"], (first, last)
    assert last["diff"] < first["diff"]


def test_resume_ends_with_the_same_weights_and_checkpoints_are_pickle_free(
    backbone: Backbone, data: TrainingSet, tmp_path: Path
) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        full = train_controlnet(backbone, data, None, _config(), tmp_path / "full", resume=False, progress=False)
        cut = train_controlnet(
            backbone, data, None, _config(), tmp_path / "cut", resume=False, progress=False, stop_after=5
        )
        assert not cut.completed and cut.checkpoint_dir.name == "step-00000004"  # step 5 was lost, as in a kill
        resumed = train_controlnet(backbone, data, None, _config(), tmp_path / "cut", resume=True, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    assert resumed.lineage["resumed_from"].endswith("step-00000004")
    assert resumed.weights_sha256 == full.weights_sha256
    a = load_file(str(full.checkpoint_dir / "controlnet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed.checkpoint_dir / "controlnet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.loss_history) == strip(full.loss_history)

    # Pickle-free: nothing with a pickle suffix, everything loads with safetensors + json.
    checkpoints = sorted((tmp_path / "cut" / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["step-00000004", "step-00000006"]  # keep_last=2
    assert not pickle_files(tmp_path / "cut") and not pickle_files(tmp_path / "full")
    ckpt = checkpoints[-1]
    for name in ("optimizer", "lr_scheduler", "rng", "ema"):
        load_file(str(ckpt / f"{name}.safetensors"))
        json.loads((ckpt / f"{name}.json").read_text())
    opt = load_state(ckpt, "optimizer")
    assert opt["param_groups"][0]["betas"] == (0.9, 0.999) and opt["state"][0]["exp_avg"].dtype == torch.float32
    state = json.loads((resumed.checkpoint_dir / "training_state.json").read_text())
    assert state["weights_sha256"] == resumed.weights_sha256 and state["weights"] == "ema"
    assert any("tiny random" in w for w in state["lineage"]["warnings"])
    model = load_controlnet(resumed.checkpoint_dir)
    assert model.config.conditioning_channels == 2


def test_validation_is_repeatable_and_accumulation_runs(backbone: Backbone, data: TrainingSet) -> None:
    from align_core.stimuli.diffusion.train import ControlNetTrainer

    cfg = _config(batch_size=1, gradient_accumulation_steps=2, use_ema=False, warmup_steps=0)
    trainer = ControlNetTrainer(backbone, build_controlnet(backbone), cfg, LPIPS())
    first, second = trainer.validate(data), trainer.validate(data)
    assert {k: v for k, v in first.items()} == {k: v for k, v in second.items()}
    record = trainer.train_step(data)
    assert trainer.step == 1 and record["grad_norm"] > 0 and np.isfinite(record["loss"])
    assert trainer.order_pos == 2  # two micro-batches of one sample each
    assert trainer.validate(data)["loss"] != first["loss"]
