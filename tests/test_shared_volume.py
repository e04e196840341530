"""Past one machine's disk: the data directory is a shared POSIX volume that every node mounts,
not necessarily at the same path. What one node wrote must be read correctly by another that
mounts the volume elsewhere: the checkpoint pointer, the training run key and every stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from align_core.io.layout import DataLayout
from align_core.stages.checkpoint import (
    POINTER_PATH_KEYS,
    portable_checkpoint_pointer,
    read_checkpoint_pointer,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST_CONFIG = {
    "controlnet_checkpoint": {
        "steps": 4,
        "batch_size": 2,
        "checkpoint_every": 2,
        "validate_every": 2,
        "warmup_steps": 1,
    },
    "variant_quality": {"measure_every": 4, "check_max_frames": 12, "max_frames": 12, "lpips_every": 48},
    "variant_videos": {"propagation": "keyframes", "keyframe_stride": 6},
}


def _pointer(root: Path) -> dict:
    run = root / "artifacts" / "controlnet_checkpoint" / "_global" / "runs" / "abc" / "final"
    return {
        "checkpoint_dir": str(run),
        "controlnet_dir": str(run / "controlnet"),
        "backbone": str(root / "models" / "tiny-sd"),
        "weights_sha256": "0" * 64,
    }


def test_checkpoint_pointer_is_read_at_the_mount_point_of_the_reading_node(tmp_path: Path) -> None:
    trainer = DataLayout(tmp_path / "mounted-here").ensure()
    editor = DataLayout(tmp_path / "mounted-there").ensure()
    stored = portable_checkpoint_pointer(trainer, _pointer(trainer.root))
    assert all(not Path(stored[key]).is_absolute() for key in POINTER_PATH_KEYS), stored
    path = editor.artifact("controlnet_checkpoint", "current")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    assert read_checkpoint_pointer(editor) == {**_pointer(editor.root), "weights_sha256": "0" * 64}


def test_paths_outside_the_volume_and_hub_ids_are_kept_as_written(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    pointer = {"checkpoint_dir": "/opt/weights/run", "backbone": "runwayml/stable-diffusion-v1-5"}
    stored = portable_checkpoint_pointer(layout, pointer)
    assert stored == pointer
    path = layout.artifact("controlnet_checkpoint", "current")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    assert read_checkpoint_pointer(layout) == pointer


def _other_filesystem(tmp_path: Path) -> Path:
    """A directory on another filesystem than ``tmp_path`` where the machine has one (tmpfs)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return Path(tempfile.mkdtemp(prefix="align-volume-", dir=shm))
    return tmp_path / "first-mount"


@pytest.mark.slow
def test_a_volume_mounted_elsewhere_materializes_without_retraining(
    tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    from align_demo.corpus import generate_demo_corpus

    first = _other_filesystem(tmp_path)
    try:
        layout = DataLayout(first / "data").ensure()
        corpus = generate_demo_corpus(
            layout,
            n_videos=1,
            seed=11,
            width=144,
            height=256,
            keywords_source=shared_data / "keywords.csv",
            n_empty_keywords=0,
            n_cta_keywords=0,
            videos_without_scene_rows=0,
            duration_range_s=(4.0, 4.0),
        )
        _materialize(layout, list(corpus.video_ids))
        runs_before = sorted(p.name for p in layout.artifact("controlnet_checkpoint", "runs").iterdir())
        stored = json.loads(layout.artifact("controlnet_checkpoint", "current").read_text())
        assert not any(Path(stored[key]).is_absolute() for key in POINTER_PATH_KEYS), stored
        moved = DataLayout(shutil.move(str(layout.root), str(tmp_path / "second-mount" / "data")))
    finally:
        shutil.rmtree(first, ignore_errors=True)
    assert not layout.root.exists()
    _materialize(moved, list(corpus.video_ids))
    runs_after = sorted(p.name for p in moved.artifact("controlnet_checkpoint", "runs").iterdir())
    assert runs_after == runs_before  # the same training run: its key does not depend on the mount point
    pointer = read_checkpoint_pointer(moved)
    assert pointer is not None and Path(pointer["controlnet_dir"]).is_dir()
    assert Path(pointer["controlnet_dir"]).is_relative_to(moved.root)
    for video_id in corpus.video_ids:
        assert moved.variant_video(video_id, "baseline").exists()


def _materialize(layout: DataLayout, video_ids: list[str]) -> None:
    """Materialize the whole graph in a fresh process, as a node that mounts the volume at ``layout.root``."""
    script = (
        "import json, sys\n"
        "from dagster import DagsterInstance\n"
        "from align_assets.runner import materialize_everything, prepare_instance\n"
        "from align_core.io.layout import DataLayout\n"
        "layout = DataLayout(sys.argv[1])\n"
        "prepare_instance(layout.dagster_home)\n"
        "with DagsterInstance.get() as instance:\n"
        "    failures = materialize_everything(json.loads(sys.argv[2]), instance=instance,\n"
        "                                      op_config=json.loads(sys.argv[3]), log=lambda _line: None)\n"
        "sys.exit(json.dumps(failures) if failures else 0)\n"
    )
    env = {
        **os.environ,
        "ALIGN_DATA_DIR": str(layout.root),
        "ALIGN_PROFILE": "demo",
        "DAGSTER_HOME": str(layout.dagster_home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-c", script, str(layout.root), json.dumps(video_ids), json.dumps(FAST_CONFIG)]
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
