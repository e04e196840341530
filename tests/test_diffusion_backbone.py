"""Tiny backbone round trip, zero-initialised ControlNet, and the torchvision-free LPIPS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from align_core.stimuli.diffusion.backbone import (
    CONTROL_CHANNELS,
    build_controlnet,
    build_tiny_backbone,
    load_backbone,
)
from align_core.stimuli.diffusion.lpips_alex import LPIPS, LPIPS_CHANNELS, AlexNetFeatures


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("bb") / "tiny-sd", seed=0)


def test_tiny_backbone_is_a_real_diffusers_directory_and_round_trips(tiny_dir: Path) -> None:
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    for sub in ("vae", "unet", "text_encoder"):
        assert list((tiny_dir / sub).glob("*.safetensors")), sub
    assert not [p for p in tiny_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]

    a = load_backbone(tiny_dir, "tiny")
    b = load_backbone(tiny_dir, "tiny")
    assert a.lineage["pretrained"] is False
    assert "NOT pretrained" in a.lineage["description"]
    assert a.id == b.id and a.id.startswith("tiny-sd-random-seed0@")
    for m_a, m_b in ((a.unet, b.unet), (a.vae, b.vae), (a.text_encoder, b.text_encoder)):
        sa, sb = m_a.state_dict(), m_b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # Rebuilding with the same seed gives the same weights (same digest).
    again = build_tiny_backbone(tiny_dir.parent / "again", seed=0)
    assert load_backbone(again, "tiny").lineage["weights_sha256"] == a.lineage["weights_sha256"]
    # Frozen, and a tiny directory is refused as "pretrained".
    assert all(not p.requires_grad for p in a.unet.parameters())
    with pytest.raises(ValueError):
        load_backbone(tiny_dir, "pretrained")
    states = a.encode_prompts(["bottle", ""])
    assert states.shape == (2, 77, a.unet.config.cross_attention_dim)


def test_fresh_controlnet_leaves_unet_prediction_unchanged(tiny_dir: Path) -> None:
    bb = load_backbone(tiny_dir, "tiny")
    controlnet = build_controlnet(bb)
    assert controlnet.config.conditioning_channels == CONTROL_CHANNELS
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    control = torch.rand(2, 2, 64, 64, generator=g)  # pixel resolution = 8x the latent
    t = torch.tensor([10, 700])
    text = bb.encode_prompts(["bottle", ""])
    with torch.no_grad():
        down, mid = controlnet(latents, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        plain = bb.unet(latents, t, encoder_hidden_states=text).sample
        with_control = bb.unet(
            latents,
            t,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
    assert mid.shape[-2:] == (4, 4) and down[0].shape[-2:] == (8, 8)
    assert all(float(r.abs().max()) == 0.0 for r in [*down, mid])
    assert torch.equal(plain, with_control)


def test_lpips_uses_the_real_linear_weights_and_flags_a_random_backbone(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="random-alexnet"):
        lp = LPIPS(alexnet_path=tmp_path / "missing.pth")
    assert lp.backbone_state.startswith("random-alexnet") and "NOT perceptual" in lp.backbone_state
    assert lp.linear_weights.startswith("lpips-v0.1-alex:")
    for lin, c in zip(lp.lins, LPIPS_CHANNELS, strict=False):
        assert tuple(lin.weight.shape) == (1, c, 1, 1)
        assert float(lin.weight.min()) >= 0.0 and float(lin.weight.sum()) > 0.0
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.all(lp(x, x) == 0)
    assert torch.all(lp(x, -x) > 0)


def test_lpips_loads_a_torchvision_layout_alexnet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = AlexNetFeatures()
    path = tmp_path / "alexnet.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    assert "features.0.weight" in reference.state_dict() and "features.10.weight" in reference.state_dict()
    lp = LPIPS(alexnet_path=path)
    assert lp.pretrained and lp.backbone_state.startswith("pretrained-alexnet:")
    assert torch.equal(lp.net.features[3].weight, reference.features[3].weight)


_LPIPS_IN_A_FRESH_PROCESS = """
import sys, warnings, torch
warnings.simplefilter("ignore")
torch.manual_seed(int(sys.argv[1]))  # a different global RNG state in each process
from align_core.stimuli.diffusion.lpips_alex import LPIPS
lp = LPIPS(alexnet_path=sys.argv[2])
g = torch.Generator().manual_seed(0)
x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
print(lp.backbone_state)
print(repr(lp(x, y).tolist()))
"""


def test_the_random_lpips_backbone_is_seeded_so_values_repeat_across_processes(tmp_path: Path) -> None:
    """Issue 21 item 10: without AlexNet weights two runs used to give different LPIPS values."""
    import subprocess
    import sys

    missing = str(tmp_path / "missing.pth")
    processes = [  # side by side: each pays torch's import
        subprocess.Popen(
            [sys.executable, "-c", _LPIPS_IN_A_FRESH_PROCESS, str(seed), missing],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    runs = [out.splitlines() for out, _ in outputs]
    assert runs[0] == runs[1], runs
    assert "random-feature (seeded" in runs[0][0] and "NOT perceptual" in runs[0][0]
    torch.manual_seed(5)
    with pytest.warns(UserWarning, match="seeded"):
        here = LPIPS(alexnet_path=tmp_path / "missing.pth")
    assert runs[0][1] != "[0.0, 0.0]" and here.pretrained is False
