"""``align-pretest build``: a served study from one experiment's eligible variants.

The study folder ``<data>/pretest/<study_id>/`` holds ``study.json`` (the design, hashed like the
analysis plan), the media (eligible variant mp4s hard-linked or copied under ``media/``, and a
synthetic practice clip), the salt for hashing crowd ids and, once served, the server secret
and the ``sessions/`` folder (formats in the pretest contract, docs/pretest.md). A variant enters
the study only when ``variant_quality`` checked exactly that render and passed it (the same rule
as the ``variants`` table); a video enters only when all the study's variants are eligible for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from align_core.experiments.eligibility import variants_select_sql
from align_core.experiments.experiments_table import experiment_file
from align_core.io.atomic import atomic_directory, atomic_write_text
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter, probe_video
from align_core.perception.attention.geometry import DEFAULT_DISPLAY_WIDTH_CM, DEFAULT_VIEWING_DISTANCE_CM
from align_core.pretest.design import design_hash, latin_square_lists
from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, control_name

__all__ = [
    "STUDY_ID",
    "BuiltStudy",
    "StudyError",
    "StudySettings",
    "build_study",
    "eligible_variant_files",
    "load_study",
    "study_dir",
    "write_secret_file",
]

STUDY_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
STUDY_FILE = "study.json"
SALT_FILE = "salt"


class StudyError(ValueError):
    """A study that cannot be built or read; the message names the file or the video."""


@dataclass(frozen=True)
class StudySettings:
    """What a lab decides about its pretest (``--config study.yaml``; every key optional)."""

    consent_text: str = (
        "This study shows short video ads. Move your mouse (or finger) to where you look; only "
        "the area around the pointer is sharp. We record the pointer position while the videos "
        "play and your answers; no name, IP address or browser details are stored. You can "
        "withdraw at any time with the Withdraw button, and your responses are deleted."
    )
    instructions: str = (
        "Each video plays once, blurred except around your pointer. Keep the pointer on whatever "
        "you are looking at. When a red dot appears, click it. A practice clip comes first."
    )
    window_deg: float = 2.0
    distance_cm: float = DEFAULT_VIEWING_DISTANCE_CM
    display_width_cm: float = DEFAULT_DISPLAY_WIDTH_CM
    attention_checks: int = 2
    realism_enabled: bool = True
    realism_mode: str = "2afc"
    realism_trials: int = 4
    completion_code: str = ""
    variants: tuple[str, ...] = ()  # default: every registered arm eligible for the videos
    videos: tuple[str, ...] = ()  # default: every video with all those arms eligible

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> StudySettings:
        import yaml

        try:
            entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise StudyError(f"study config {path}: cannot be read ({exc})") from exc
        if not isinstance(entries, Mapping):
            raise StudyError(f"study config {path}: expected a mapping of settings, got {type(entries).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(entries) - known)
        if unknown:
            raise StudyError(f"study config {path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if k in ("variants", "videos") else v for k, v in entries.items()}
        return cls(**values)

    def __post_init__(self) -> None:
        if not 0 < self.window_deg < 30:
            raise StudyError(f"window_deg must lie in (0, 30) degrees, got {self.window_deg}")
        if self.realism_mode not in ("2afc", "rating"):
            raise StudyError(f"realism_mode must be '2afc' or 'rating', got {self.realism_mode!r}")
        if self.attention_checks < 0 or self.realism_trials < 0:
            raise StudyError("attention_checks and realism_trials must be >= 0")


def study_dir(layout: DataLayout, study_id: str) -> Path:
    """``<data>/pretest/<study_id>`` (the id checked first, so it cannot name another folder)."""
    if not STUDY_ID.match(study_id):
        raise StudyError(f"study id {study_id!r} must match {STUDY_ID.pattern}")
    return layout.root / "pretest" / study_id


def registry_variants(layout: DataLayout, experiment_id: str) -> tuple[VariantSpec, ...]:
    """The experiment's arms from its registry file (``experiments/<id>.experiment.json``)."""
    path = experiment_file(layout.root / "experiments", experiment_id)
    if not path.is_file():
        raise StudyError(f"experiment {experiment_id!r} is not registered: no {path}")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))["tables"].get("experiment_variants")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"experiment file {path} cannot be read ({exc})") from exc
    if not table or not table["rows"]:
        return DEFAULT_VARIANTS
    rows = sorted((dict(zip(table["columns"], row, strict=True)) for row in table["rows"]), key=lambda r: r["position"])
    return tuple(VariantSpec(r["variant"], r["window"], float(r["factor"]), r["kind"], r["role"]) for r in rows)


def eligible_variant_files(layout: DataLayout) -> dict[str, dict[str, Path]]:
    """Per video, the eligible variants' mp4s: rendered (``variants.parquet``) and passed by
    ``variant_quality`` for exactly that render (``eligibility.parquet``, same sha256)."""
    import duckdb

    renders = layout.artifact_files("variant_videos", "rows")
    if not renders:
        raise StudyError(f"no rendered variants under {layout.artifacts_dir / 'variant_videos'}")
    checks = layout.artifact_files("variant_quality", "eligibility")
    sql = variants_select_sql(_sql_list(renders), _sql_list(checks) if checks else None)
    rows = (
        duckdb.connect().execute(f"SELECT CAST(video_id AS VARCHAR), variant, path, eligible FROM ({sql})").fetchall()
    )
    found: dict[str, dict[str, Path]] = {}
    for video_id, variant, path, eligible in rows:
        if eligible:
            full = Path(path) if Path(path).is_absolute() else layout.root / path
            found.setdefault(str(video_id), {})[str(variant)] = full
    return found


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def choose_cells(
    registry: Sequence[VariantSpec], eligible: Mapping[str, Mapping[str, Path]], settings: StudySettings
) -> tuple[list[str], list[str]]:
    """(variants, videos): the study's arms (the control first) and the videos eligible in all of them."""
    names = [s.name for s in registry]
    wanted = list(settings.variants) or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise StudyError(f"variants {unknown} are not arms of the experiment (arms: {names})")
    control = control_name(registry)
    variants = [control] + [v for v in wanted if v != control]
    candidates = list(settings.videos) or sorted(eligible)
    if not settings.variants:  # default arms: those eligible for at least one video with its control
        with_control = [v for v in candidates if control in eligible.get(v, {})]
        variants = [v for v in variants if any(v in eligible[video] for video in with_control)]
    videos = [v for v in candidates if all(name in eligible.get(v, {}) for name in variants)]
    if len(variants) < 2 or not videos:
        raise StudyError(
            f"no video has the control {control!r} and another arm eligible (eligible: "
            f"{ {v: sorted(e) for v, e in eligible.items()} })"
        )
    return variants, videos


def write_secret_file(path: Path) -> str:
    """A random hex secret in ``path`` (mode 0600), created once; returns its value."""
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def write_practice_clip(path: Path, width: int = 180, height: int = 320, fps: int = 24, seconds: float = 4.0) -> None:
    """A neutral practice clip (a dot drifting over a gradient; real H.264), not one of the ads."""
    ys, xs = np.mgrid[0:height, 0:width]
    with VideoWriter(path, fps) as writer:
        for index in range(int(seconds * fps)):
            phase = index / (seconds * fps)
            frame = np.zeros((height, width, 3), np.uint8)
            frame[..., 0] = (60 + 80 * xs / width).astype(np.uint8)
            frame[..., 2] = (60 + 80 * ys / height).astype(np.uint8)
            cx = width * (0.2 + 0.6 * phase)
            cy = height * (0.5 + 0.3 * math.sin(2 * math.pi * phase))
            frame[(xs - cx) ** 2 + (ys - cy) ** 2 < (width / 10) ** 2] = (240, 220, 40)
            writer.write(frame)


@dataclass
class BuiltStudy:
    path: Path
    study: dict[str, Any]
    excluded_videos: list[str] = field(default_factory=list)


def build_study(
    layout: DataLayout, experiment_id: str, settings: StudySettings | None = None, study_id: str | None = None
) -> BuiltStudy:
    """Write ``<data>/pretest/<study_id>/`` whole (media, salt, ``study.json``) and return it.

    A study that already has sessions is never rebuilt (its design would change under them).
    """
    settings = settings or StudySettings()
    study_id = study_id or f"{experiment_id}-pretest".lower()
    target = study_dir(layout, study_id)
    sessions = target / "sessions"
    if sessions.is_dir() and any(sessions.glob("*.jsonl")):
        raise StudyError(f"study {target} already has sessions; build a new one with --study-id")
    registry = registry_variants(layout, experiment_id)
    eligible = eligible_variant_files(layout)
    variants, videos = choose_cells(registry, eligible, settings)
    with atomic_directory(target) as folder:
        entries = [_copy_video_media(folder, video, {v: eligible[video][v] for v in variants}) for video in videos]
        write_practice_clip(folder / "media" / "practice.mp4")
        write_secret_file(folder / SALT_FILE)
        study = _study_document(study_id, experiment_id, settings, variants, entries)
        atomic_write_text(folder / STUDY_FILE, json.dumps(study, indent=1, sort_keys=True) + "\n")
    left_out = sorted(set(settings.videos or eligible) - set(videos))
    return BuiltStudy(target, study, left_out)


def _copy_video_media(folder: Path, video_id: str, files: Mapping[str, Path]) -> dict[str, Any]:
    """Hard-link (or copy) one video's variant files into ``media/<video_id>/`` and describe them."""
    media = folder / "media" / video_id
    media.mkdir(parents=True, exist_ok=True)
    described: list[dict[str, str]] = []
    for variant, source in files.items():
        if not source.is_file():
            raise StudyError(f"video {video_id} variant {variant}: file {source} is missing")
        target = media / f"{variant}.mp4"
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        described.append({"variant": variant, "media": f"media/{video_id}/{variant}.mp4"})
    probe = probe_video(media / f"{next(iter(files))}.mp4")
    return {
        "video_id": video_id,
        "fps": round(probe.fps, 6),
        "n_frames": probe.frame_count,
        "width": probe.width,
        "height": probe.height,
        "variants": described,
    }


def _study_document(
    study_id: str, experiment_id: str, settings: StudySettings, variants: list[str], videos: list[dict[str, Any]]
) -> dict[str, Any]:
    lists = latin_square_lists([v["video_id"] for v in videos], variants)
    aspect = float(np.median([v["height"] / v["width"] for v in videos]))
    study: dict[str, Any] = {
        "study_id": study_id,
        "experiment_id": experiment_id,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "consent_text": settings.consent_text,
        "instructions": settings.instructions,
        "window_deg": float(settings.window_deg),
        "viewing": {
            "distance_cm": float(settings.distance_cm),
            "screen_height_cm": round(settings.display_width_cm * aspect, 4),
            "display_width_cm": float(settings.display_width_cm),
        },
        "variants": variants,
        "videos": videos,
        "lists": lists,
        "practice_media": "media/practice.mp4",
        "attention_checks": int(settings.attention_checks),
        "realism": {
            "enabled": bool(settings.realism_enabled),
            "mode": settings.realism_mode,
            "trials_per_participant": int(settings.realism_trials),
            "pairs": [{"video_id": v["video_id"], "variant": name} for v in videos for name in variants[1:]],
        },
        "completion_code": settings.completion_code or secrets.token_hex(4).upper(),
        "salt_file": SALT_FILE,
        "settings": asdict(settings),
    }
    study["design_sha256"] = design_hash(study)
    return study


def load_study(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``study.json`` of a built study, its design hash checked (a hand-edited design is refused)."""
    path = Path(folder) / STUDY_FILE
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyError(f"study file {path} cannot be read ({exc}); build it with align-pretest build") from exc
    if design_hash(study) != study.get("design_sha256"):
        raise StudyError(f"study file {path}: design_sha256 does not match its content (edited after build?)")
    return study
