"""TEST-ONLY: simulated pretest participants written as the server writes them (PRETEST_CONTRACT.md).

Each simulated participant watches every video once, in the variant of their Latin-square list.
On every displayed frame their cursor is on the product with probability
``p = base + participant effect + video effect (+ planted change in the boosted window of a boosted
variant)``, else somewhere in the frame off the product; a few samples fall outside the video and
a practice trial is recorded, neither of which may reach the analysis. Nothing here is used by
the platform.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align_core.pretest.design import design_hash

__all__ = ["SimStudy", "write_participants", "write_study"]

BOX = (0.55, 0.1, 0.95, 0.45)  # product box (x0, y0, x1, y1) as fractions of width / height


@dataclass
class SimStudy:
    """A small study: ``videos`` of ``width`` x ``height``, ``n_frames`` at ``fps``, three variants."""

    study_id: str = "sim-pretest"
    videos: tuple[str, ...] = ("vid_a", "vid_b", "vid_c", "vid_d", "vid_e", "vid_f")
    variants: tuple[str, ...] = ("baseline", "early_boost", "placebo")
    width: int = 64
    height: int = 112
    n_frames: int = 30
    fps: float = 10.0
    window_deg: float = 1.0
    viewing: dict[str, float] = field(default_factory=lambda: {"distance_cm": 30.0, "screen_height_cm": 12.0})

    def lists(self) -> list[list[dict[str, str]]]:
        n = len(self.variants)
        return [
            [{"video_id": v, "variant": self.variants[(k + j) % n]} for j, v in enumerate(self.videos)]
            for k in range(n)
        ]

    def study_json(self) -> dict[str, Any]:
        videos = [
            {
                "video_id": v,
                "fps": self.fps,
                "n_frames": self.n_frames,
                "width": self.width,
                "height": self.height,
                "variants": [{"variant": n, "media": f"media/{v}/{n}.mp4"} for n in self.variants],
            }
            for v in self.videos
        ]
        study = {
            "study_id": self.study_id,
            "experiment_id": "sim-exp",
            "design_sha256": "0" * 64,
            "created_at": "2026-01-01T00:00:00+00:00",
            "consent_text": "test",
            "instructions": "test",
            "window_deg": self.window_deg,
            "viewing": self.viewing,
            "videos": videos,
            "lists": self.lists(),
            "practice_media": "media/practice.mp4",
            "attention_checks": 1,
            "realism": {"enabled": True, "mode": "2afc", "pairs": []},
            "salt_file": "salt",
        }
        return {**study, "design_sha256": design_hash(study)}  # as align-pretest build hashes it

    def masks(self) -> np.ndarray:
        """The product box on every frame (the same for every video)."""
        masks = np.zeros((self.n_frames, self.height, self.width), dtype=bool)
        x0, y0, x1, y1 = BOX
        masks[:, int(y0 * self.height) : int(y1 * self.height), int(x0 * self.width) : int(x1 * self.width)] = True
        return masks


def write_study(data_dir: Path, sim: SimStudy) -> Path:
    directory = Path(data_dir) / "pretest" / sim.study_id
    (directory / "sessions").mkdir(parents=True, exist_ok=True)
    (directory / "study.json").write_text(json.dumps(sim.study_json()))
    return directory


def _cursor_point(rng: np.random.Generator, on_product: bool) -> tuple[float, float]:
    x0, y0, x1, y1 = BOX
    if on_product:
        return float(rng.uniform(x0 + 0.02, x1 - 0.02)), float(rng.uniform(y0 + 0.02, y1 - 0.02))
    while True:
        x, y = float(rng.uniform(0.02, 0.98)), float(rng.uniform(0.02, 0.98))
        if not (x0 - 0.15 < x < x1 + 0.15 and y0 - 0.1 < y < y1 + 0.1):
            return x, y


def _trial_samples(
    rng: np.random.Generator, sim: SimStudy, p_frames: np.ndarray, outside_share: float
) -> list[list[float]]:
    samples = []
    for t in range(sim.n_frames):
        media_time = (t + 0.5) / sim.fps
        if rng.random() < outside_share:
            samples.append([media_time, 1.2, 0.5])
            continue
        samples.append([media_time, *_cursor_point(rng, rng.random() < p_frames[t])])
    return samples


def _line(kind: str, session_id: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "session_id": session_id, "batch_id": uuid.uuid4().hex, "received_at": "2026"} | fields


def _probabilities(sim: SimStudy, boosted: bool, base: float, change: float) -> np.ndarray:
    p = np.full(sim.n_frames, base)
    if boosted:
        p[: sim.n_frames // 3] += change
    return np.clip(p, 0.02, 0.98)


def write_participants(
    data_dir: Path,
    sim: SimStudy,
    participants: int,
    change: float = 0.3,
    seed: int = 0,
    outside_share: float = 0.05,
    batch_size: int = 10,
    boosted: tuple[str, ...] = ("early_boost",),
) -> dict[str, int]:
    """Write ``participants`` session files; returns session_id -> list index.

    ``change`` is added to the on-product probability in the first third of ``boosted`` variants.
    """
    rng = np.random.default_rng(seed)
    directory = write_study(data_dir, sim) / "sessions"
    video_effect = dict(zip(sim.videos, rng.normal(0, 0.05, len(sim.videos)), strict=True))
    lists = sim.lists()
    sessions = {}
    for k in range(participants):
        session_id = uuid.UUID(int=int(rng.integers(0, 2**63)) * 2**64 + k).hex
        lines = [_line("session", session_id, list_index=k % len(lists), crowd={}, started_at="2026")]
        practice = _trial_samples(rng, sim, np.full(sim.n_frames, 0.9), 0.0)
        lines.append(
            _line(
                "cursor",
                session_id,
                trial_index=-1,
                video_id="practice",
                variant="practice",
                practice=True,
                viewport={"w": 800, "h": 600},
                video_rect={"x": 0, "y": 0, "w": 64, "h": 112},
                samples=practice,
            )
        )
        person = float(rng.normal(0, 0.05))
        for trial, item in enumerate(rng.permutation(lists[k % len(lists)])):
            base = 0.3 + person + video_effect[item["video_id"]]
            samples = _trial_samples(
                rng, sim, _probabilities(sim, item["variant"] in boosted, base, change), outside_share
            )
            for start in range(0, len(samples), batch_size):
                lines.append(
                    _line(
                        "cursor",
                        session_id,
                        trial_index=trial,
                        video_id=item["video_id"],
                        variant=item["variant"],
                        practice=False,
                        viewport={"w": 800, "h": 600},
                        video_rect={"x": 0, "y": 0, "w": 64, "h": 112},
                        samples=samples[start : start + batch_size],
                    )
                )
        lines.append(_line("attention_check", session_id, trial_index=0, shown_at_s=1.0, clicked=True, rt_ms=500.0))
        lines.append(
            _line(
                "realism",
                session_id,
                video_id=sim.videos[0],
                variant="early_boost",
                mode="2afc",
                left="baseline",
                choice="right",
                rating=None,
                correct=bool(rng.random() < 0.6),
            )
        )
        lines.append(_line("complete", session_id, completion_code="C0DE"))
        path = directory / f"{session_id}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(line) + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        sessions[session_id] = k % len(lists)
    return sessions
