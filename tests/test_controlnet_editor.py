"""The ControlNet keyframe editor on a tiny trained checkpoint: contract, locality, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from align_core.io.hashing import file_sha256
from align_core.stimuli.diffusion.backbone import Backbone, build_tiny_backbone, load_backbone
from align_core.stimuli.diffusion.dataset import ControlSample, build_training_set
from align_core.stimuli.diffusion.train import TrainConfig, train_controlnet
from align_core.stimuli.editing.base import KeyframeEditor, KeyframeEditRequest
from align_core.stimuli.editing.controlnet_editor import ControlNetEditor

pytestmark = pytest.mark.filterwarnings("ignore:random-alexnet")


def _frame_and_control(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frame = np.stack([xx / w, yy / h, 0.5 * np.ones_like(xx)], axis=-1) * 220
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 2, w // 3 : 2 * w // 3] = True
    frame[mask] = (200, 30, 40)
    attention = np.exp(-(((xx / w - 0.5) ** 2 + (yy / h - 0.4) ** 2) / 0.05)).astype(np.float32)
    return frame.astype(np.uint8), mask, attention


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Backbone, Path]:
    root = tmp_path_factory.mktemp("editor")
    backbone = load_backbone(build_tiny_backbone(root / "tiny-sd", seed=0), "tiny")
    frame, mask, attention = _frame_and_control(64, 64)
    control = np.stack([mask.astype(np.float32), attention * mask])
    data = build_training_set(
        [ControlSample(frame, control, "red bottle", "v1")], 64, backbone.vae, backbone.encode_prompts
    )
    cfg = TrainConfig(
        max_steps=2,
        batch_size=1,
        learning_rate=1e-3,
        warmup_steps=0,
        checkpoint_every=0,
        validate_every=0,
        mixed_precision="no",
    )
    result = train_controlnet(backbone, data, None, cfg, root / "run", resume=False, progress=False)
    return backbone, result.checkpoint_dir


def _request(seed: int, h: int = 72, w: int = 48) -> KeyframeEditRequest:
    frame, mask, attention = _frame_and_control(h, w)
    boosted = np.clip(attention * 1.5, 0, 1) * mask
    allowed = np.zeros((h, w), bool)
    allowed[h // 6 : 2 * h // 3, w // 6 : 5 * w // 6] = True
    return KeyframeEditRequest(
        frame=frame,
        mask=mask,
        attention=attention,
        target_control=np.stack([mask.astype(np.float32), boosted]),
        original_alignment=0.3,
        target_alignment=0.45,
        allowed=allowed,
        kind="boost",
        strength=0.5,
        seed=seed,
    )


def test_editor_contract_locality_and_determinism(trained: tuple[Backbone, Path]) -> None:
    backbone, checkpoint = trained
    editor = ControlNetEditor(backbone, checkpoint, steps=4, strength=0.5, prompt="red bottle")
    assert isinstance(editor, KeyframeEditor)
    request = _request(seed=7)  # 72x48: not a multiple of 8, exercises the resize path
    out = editor.edit(request)
    assert out.shape == request.frame.shape and out.dtype == np.uint8
    assert np.array_equal(out[~request.allowed], request.frame[~request.allowed])
    assert not np.array_equal(out[request.allowed], request.frame[request.allowed])
    assert np.array_equal(editor.edit(request), out)
    other = editor.edit(_request(seed=8))
    assert not np.array_equal(other, out)
    reported, report = editor.edit_with_report(request)  # inherited from the protocol: measured on the output
    assert np.array_equal(reported, out) and report.to_dict()["reported"] is False and report.to_dict()["delta_e"] > 0

    lineage = editor.lineage()
    assert lineage["checkpoint_sha256"] == file_sha256(
        checkpoint / "controlnet" / "diffusion_pytorch_model.safetensors"
    )
    assert lineage["backbone_id"] == backbone.id and lineage["backbone"]["pretrained"] is False
    assert (lineage["steps"], lineage["strength"], lineage["scheduler"]) == (4, 0.5, "ddim")


def test_editor_with_guidance_ddpm_and_nothing_allowed(trained: tuple[Backbone, Path]) -> None:
    backbone, checkpoint = trained
    editor = ControlNetEditor(
        backbone,
        checkpoint,
        steps=3,
        strength=0.7,
        guidance_scale=3.0,
        scheduler="ddpm",
        resolution=32,
        prompt="red bottle",
    )
    request = _request(seed=3, h=64, w=64)
    out = editor.edit(request)
    assert out.shape == (64, 64, 3) and np.array_equal(out[~request.allowed], request.frame[~request.allowed])
    assert np.array_equal(editor.edit(request), out)
    frozen = KeyframeEditRequest(**{**request.__dict__, "allowed": np.zeros((64, 64), bool)})
    assert np.array_equal(editor.edit(frozen), request.frame)
