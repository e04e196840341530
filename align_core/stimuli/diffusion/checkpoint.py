"""Pickle-free checkpoints: safetensors for tensors, JSON for everything else.

A training checkpoint directory holds ``controlnet/`` (``save_pretrained`` safetensors), the
optimizer, LR-scheduler, AMP-scaler, EMA and RNG states, and ``training_state.json``. Arbitrary
nested state (an optimizer's ``state_dict`` has int keys, tuples and tensors) is stored as a
JSON skeleton whose tensor leaves point into one safetensors file, so loading never unpickles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import ControlNetModel
from safetensors.torch import load_file, save_file

__all__ = [
    "CHECKPOINT_PREFIX",
    "WEIGHTS_NAME",
    "controlnet_weights_path",
    "latest_checkpoint",
    "load_controlnet",
    "load_state",
    "pickle_files",
    "prune_checkpoints",
    "save_state",
]

CHECKPOINT_PREFIX = "step-"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        tensors[key] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors, f"{path}.{k}" if path else str(k))] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} without pickle")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        raise ValueError(f"unknown encoded node {list(obj)}")
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_state(directory: Path, name: str, state: Any) -> None:
    """Write ``name.safetensors`` (tensor leaves) and ``name.json`` (the skeleton)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors, "")
    save_file(tensors, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(skeleton))


def load_state(directory: Path, name: str, device: str | torch.device = "cpu") -> Any:
    """Inverse of :func:`save_state`, with safetensors + json only."""
    tensors = load_file(str(directory / f"{name}.safetensors"), device=str(device))
    return _decode(json.loads((directory / f"{name}.json").read_text()), tensors)


def checkpoint_step(path: Path) -> int | None:
    """The optimiser step of a ``step-00000012`` directory name, else None."""
    m = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(checkpoints_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints (those with training_state.json), oldest first."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and checkpoint_step(p) is not None and (p / "training_state.json").is_file()
    ]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_checkpoint(checkpoints_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1] if found else None


def prune_checkpoints(checkpoints_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; return what was removed."""
    found = list_checkpoints(checkpoints_dir)
    removed = found[: max(0, len(found) - max(1, keep))]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def pickle_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Files under ``directory`` whose suffix implies pickle (there must be none)."""
    return [p for p in Path(directory).rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES]


def controlnet_weights_path(checkpoint_dir: str | os.PathLike[str]) -> Path:
    """The ControlNet safetensors file inside a checkpoint (or a bare ``controlnet/``) directory."""
    root = Path(checkpoint_dir)
    model_dir = root / "controlnet" if (root / "controlnet").is_dir() else root
    return model_dir / WEIGHTS_NAME


def load_controlnet(checkpoint_dir: str | os.PathLike[str]) -> ControlNetModel:
    """Load the ControlNet of a checkpoint/export directory from safetensors only."""
    root = Path(checkpoint_dir)
    model_dir = root / "controlnet" if (root / "controlnet").is_dir() else root
    if not (model_dir / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} under {model_dir}")
    return ControlNetModel.from_pretrained(str(model_dir), use_safetensors=True, local_files_only=True)
