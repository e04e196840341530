"""Variant plans: target alignment curves per video, and the one registry of an experiment's arms.

A variant is a config entry (:class:`VariantSpec`), not code: a window (thirds of the video by
time), a factor, a kind and a role (control, treatment or placebo); a ``creative`` arm (another
creative, not an attention edit) has neither window nor factor. The experiment's list of
specs (``DEFAULT_VARIANTS`` unless a lab configures its own, see :func:`load_variant_config`) is
the only variant list: plans, export validation, the analysis's timing and dose contrasts, the
report's order, the upload manifest and the demo simulator all derive theirs from it. Windows follow the centre-time rule: an item (frame or scene)
belongs to the third of the video that holds its centre time, so frame ``i`` of ``T`` at
``fps`` belongs to the window of ``(i + 0.5) / fps`` over a duration of ``T / fps``, and a scene
to the window of ``(start + end) / 2``. Thirds are half-open, ``[0, T/3)``, ``[T/3, 2T/3)``,
``[2T/3, T]``.

Control algebra (kept deliberately simple): a variant scales the product's attention inside the
mask by the per-frame factor ``k_t`` (the spec's factor inside its window, 1 elsewhere), so the
target control is ``C'_t = [M_t, S'_t]`` with ``S'_t = clip(k_t * A_t * M_t, 0, 1)``, and the
target alignment is ``clip(k_t * a_t, 0, 1)``. S is never re-normalised per frame. Baseline
and placebo keep ``k_t = 1``: their target equals the original. For a placebo, the spec's
``factor`` names the boost whose edit magnitude it matches; its control stays unchanged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from align_core.io.atomic import atomic_path, atomic_write_text

__all__ = [
    "DEFAULT_VARIANTS",
    "NOT_RENDERED_KINDS",
    "TIME_WINDOWS",
    "VariantPlan",
    "VariantPlans",
    "VariantSpec",
    "control_name",
    "dose_windows",
    "load_variant_config",
    "load_variant_plans",
    "parse_variants",
    "plan_variants",
    "target_control",
    "target_curve",
    "timing_variants",
    "variant_names",
    "window_of",
]

Window = Literal["none", "early", "middle", "late", "full"]
VariantKind = Literal["identity", "boost", "reduce", "placebo", "creative"]
TimeWindow = Literal["early", "middle", "late"]

WINDOWS: tuple[str, ...] = ("none", "early", "middle", "late", "full")
TIME_WINDOWS: tuple[TimeWindow, ...] = ("early", "middle", "late")
KINDS: tuple[str, ...] = ("identity", "boost", "reduce", "placebo", "creative")
#: Kinds that edit nothing, so a config may leave out their window ("none") and factor (1).
UNEDITED_KINDS: tuple[str, ...] = ("identity", "creative")
#: Kinds the platform never renders: a creative arm is the lab's own ad, its results are imported.
NOT_RENDERED_KINDS: dict[str, str] = {
    "creative": "kind creative: the lab's own creative, made outside the platform; its results are imported, "
    "nothing is rendered (a render would be a copy of baseline)",
}
Role = Literal["control", "treatment", "placebo"]
ROLES: tuple[str, ...] = ("control", "treatment", "placebo")
#: The role a kind has when the config does not say: the identity re-encode is the control.
DEFAULT_ROLE: dict[str, str] = {
    "identity": "control",
    "boost": "treatment",
    "reduce": "treatment",
    "placebo": "placebo",
    "creative": "treatment",
}
#: Which kinds each role may have (a placebo may be a matched edit or an identity re-encode).
ROLE_KINDS: dict[str, tuple[str, ...]] = {
    "control": ("identity",),
    "treatment": ("boost", "reduce", "creative"),
    "placebo": ("placebo", "identity"),
}


@dataclass(frozen=True)
class VariantSpec:
    """One variant: which third(s) of the video it changes, by what factor, how, and its role.

    ``role`` defaults from the kind (identity: control, boost/reduce: treatment, placebo:
    placebo, creative: treatment); an experiment has exactly one control. A ``creative`` arm is
    a plain treatment: a different creative made outside the platform (no window, no factor),
    compared with the control like any other arm but never rendered or dosed here.
    """

    name: str
    window: Window
    factor: float
    kind: VariantKind
    role: Role | None = None

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"variant name {self.name!r}: use letters, digits, '-' or '_' (it becomes a file name)")
        if self.window not in WINDOWS:
            raise ValueError(f"variant {self.name!r}: window {self.window!r} is not one of {WINDOWS}")
        if self.kind not in KINDS:
            raise ValueError(f"variant {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        factor = float(self.factor)
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"variant {self.name!r}: factor {self.factor!r} must be a finite number >= 0")
        object.__setattr__(self, "factor", factor)
        if self.kind == "boost" and (factor <= 1.0 or self.window == "none"):
            raise ValueError(f"variant {self.name!r}: a boost needs factor > 1 and a window other than 'none'")
        if self.kind == "reduce" and (factor >= 1.0 or self.window == "none"):
            raise ValueError(f"variant {self.name!r}: a reduction needs factor < 1 and a window other than 'none'")
        if self.kind in UNEDITED_KINDS and (factor != 1.0 or self.window != "none"):
            raise ValueError(
                f"variant {self.name!r}: {self.kind} means no edit (window 'none', factor 1; leave both out)"
            )
        role = self.role if self.role is not None else DEFAULT_ROLE[self.kind]
        if role not in ROLES:
            raise ValueError(f"variant {self.name!r}: role {role!r} is not one of {ROLES}")
        if self.kind not in ROLE_KINDS[role]:
            raise ValueError(
                f"variant {self.name!r}: a {role} must be of kind {' or '.join(ROLE_KINDS[role])}, not {self.kind!r}"
            )
        object.__setattr__(self, "role", role)

    @property
    def changes_control(self) -> bool:
        """Whether the variant's target control differs from the original (boost/reduce)."""
        return self.kind in ("boost", "reduce")

    def control_factor(self, window: str) -> float:
        """k_t for an item in ``window``: the factor inside the spec's window, 1 elsewhere."""
        if not self.changes_control:
            return 1.0
        return self.factor if self.window == "full" or self.window == window else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> VariantSpec:
        """A spec from a config entry; an unedited arm (identity, creative) may leave out window and factor."""
        if entry.get("kind") in UNEDITED_KINDS:
            entry = {"window": "none", "factor": 1.0, **entry}
        missing = {"name", "window", "factor", "kind"} - set(entry)
        if missing:
            raise ValueError(f"variant config {dict(entry)!r} lacks {sorted(missing)}")
        unknown = set(entry) - {"name", "window", "factor", "kind", "role"}
        if unknown:
            raise ValueError(f"variant config {dict(entry)!r}: unknown key(s) {sorted(unknown)}")
        return cls(str(entry["name"]), entry["window"], float(entry["factor"]), entry["kind"], entry.get("role"))


DEFAULT_VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("baseline", "none", 1.0, "identity", "control"),
    VariantSpec("early_boost", "early", 1.5, "boost", "treatment"),
    VariantSpec("middle_boost", "middle", 1.5, "boost", "treatment"),
    VariantSpec("late_boost", "late", 1.5, "boost", "treatment"),
    VariantSpec("full_boost", "full", 1.5, "boost", "treatment"),
    VariantSpec("reduction", "middle", 0.5, "reduce", "treatment"),
    # Placebo: target = original; its edit matches the magnitude of a x1.5 boost, outside the mask.
    VariantSpec("placebo", "full", 1.5, "placebo", "placebo"),
)


def parse_variants(entries: Iterable[VariantSpec | Mapping[str, Any]]) -> tuple[VariantSpec, ...]:
    """Variant specs from config dicts (or specs); names must be unique and a baseline present."""
    specs = tuple(e if isinstance(e, VariantSpec) else VariantSpec.from_dict(e) for e in entries)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"variant names must be unique; repeated: {duplicates}")
    if not any(s.kind == "identity" for s in specs):
        raise ValueError("the variant list needs an identity (baseline) variant: every check compares against it")
    controls = [s.name for s in specs if s.role == "control"]
    if len(controls) != 1:
        raise ValueError(f"the variant list needs exactly one control (role 'control'), got {controls or 'none'}")
    return specs


# -- the registry: everything a consumer needs to know about an experiment's arms ---------------


def variant_names(specs: Iterable[VariantSpec] = DEFAULT_VARIANTS) -> tuple[str, ...]:
    """Arm names in registry order (the report's order)."""
    return tuple(s.name for s in specs)


def control_name(specs: Iterable[VariantSpec] = DEFAULT_VARIANTS) -> str:
    """The one arm every lift is measured against."""
    return next(s.name for s in parse_variants(specs) if s.role == "control")


def timing_variants(specs: Iterable[VariantSpec] = DEFAULT_VARIANTS) -> tuple[str, ...]:
    """Boosts confined to one third, early to late, at the factor most of them share.

    Timing contrasts compare the same dose at different times, so a registry with boosts of
    several factors contributes those of the most common factor (ties: the larger factor).
    """
    timed = [s for s in specs if s.kind == "boost" and s.window in TIME_WINDOWS]
    if not timed:
        return ()
    counts: dict[float, int] = {}
    for s in timed:
        counts[s.factor] = counts.get(s.factor, 0) + 1
    factor = max(counts, key=lambda f: (counts[f], f))
    chosen = [s for s in timed if s.factor == factor]
    return tuple(s.name for s in sorted(chosen, key=lambda s: TIME_WINDOWS.index(s.window)))


def dose_windows(specs: Iterable[VariantSpec] = DEFAULT_VARIANTS) -> dict[str, str]:
    """Each edited arm's window: where the manipulation check's achieved change is its dose."""
    return {s.name: s.window for s in specs if s.window != "none"}


def load_variant_config(
    source: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Mapping[str, Any],
) -> tuple[VariantSpec, ...]:
    """A lab's variant list from a YAML/JSON file (a list, or a mapping with ``variants:``) or entries."""
    entries: Any = source
    if isinstance(source, (str, os.PathLike)):
        import yaml

        path = Path(source)
        try:
            entries = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"variant config {path}: cannot be read ({exc})") from exc
    if isinstance(entries, Mapping):  # an experiment config: its arms, the defaults when it lists none
        entries = entries.get("variants", DEFAULT_VARIANTS)
    if not isinstance(entries, Iterable) or isinstance(entries, (str, bytes)):
        raise ValueError(f"variant config {source!r}: expected a list of variants (or 'variants:' holding one)")
    return parse_variants(entries)


def window_of(centre_time: float, duration: float) -> TimeWindow:
    """The third of the video (by time) holding ``centre_time``: [0,T/3) early, [T/3,2T/3) middle, rest late."""
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if centre_time < 0 or centre_time > duration:
        raise ValueError(f"centre time {centre_time} lies outside the video [0, {duration}]")
    position = centre_time / duration
    if position < 1.0 / 3.0:
        return "early"
    if position < 2.0 / 3.0:
        return "middle"
    return "late"


def frame_centre_times(frame_count: int, fps: float) -> np.ndarray:
    return (np.arange(frame_count, dtype=np.float64) + 0.5) / float(fps)


def target_curve(
    values: Sequence[float] | np.ndarray,
    centre_times: Sequence[float] | np.ndarray,
    duration: float,
    spec: VariantSpec,
) -> np.ndarray:
    """Target alignment: in-window values times the factor, clipped to [0, 1]; others unchanged."""
    values = np.asarray(values, dtype=np.float64)
    centre_times = np.asarray(centre_times, dtype=np.float64)
    if values.shape != centre_times.shape:
        raise ValueError(f"values {values.shape} and centre times {centre_times.shape} differ in shape")
    factors = np.array([spec.control_factor(window_of(t, duration)) for t in centre_times], dtype=np.float64)
    return np.clip(values * factors, 0.0, 1.0)


def target_control(factor: float, mask: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """C'_t = [M_t, clip(k_t * A_t * M_t, 0, 1)] as float32 (2, H, W)."""
    mask_f = np.asarray(mask, dtype=bool).astype(np.float32)
    attention = np.asarray(attention, dtype=np.float32)
    if mask_f.shape != attention.shape:
        raise ValueError(f"mask {mask_f.shape} and attention {attention.shape} differ in shape")
    salience = np.clip(np.float32(factor) * attention * mask_f, 0.0, 1.0)
    return np.stack([mask_f, salience]).astype(np.float32)


@dataclass(frozen=True)
class VariantPlan:
    """One variant's per-frame and per-scene targets."""

    spec: VariantSpec
    frame_factor: np.ndarray  # k_t, float64 (T,)
    frame_target: np.ndarray  # target a_t, float64 (T,)
    scene_target: np.ndarray  # target per scene, float64 (S,)

    def kind_at(self, frame: int) -> str:
        """What the editor is asked for at ``frame``: identity outside the window, the kind inside."""
        if self.spec.kind == "placebo":
            return "placebo"
        return self.spec.kind if self.frame_factor[frame] != 1.0 else "identity"

    def control(self, frame: int, mask: np.ndarray, attention: np.ndarray) -> np.ndarray:
        return target_control(float(self.frame_factor[frame]), mask, attention)


@dataclass(frozen=True)
class VariantPlans:
    """All variants of one video, with the frame and scene geometry they were planned on."""

    video_id: str
    fps: float
    frame_count: int
    scene_ranges: tuple[tuple[int, int], ...]  # half-open frame ranges [start, stop)
    original_alignment: np.ndarray  # float64 (T,)
    frame_windows: tuple[str, ...]
    scene_windows: tuple[str, ...]
    scene_alignment: np.ndarray  # mean per-frame alignment per scene, float64 (S,)
    plans: dict[str, VariantPlan] = field(default_factory=dict)
    imported_only: tuple[VariantSpec, ...] = ()  # arms not rendered (NOT_RENDERED_KINDS), in config order

    @property
    def not_rendered(self) -> dict[str, str]:
        """Each arm that gets no plan and no render, with the reason."""
        return {s.name: NOT_RENDERED_KINDS[s.kind] for s in self.imported_only}

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    @property
    def specs(self) -> tuple[VariantSpec, ...]:
        return tuple(p.spec for p in self.plans.values())

    def __getitem__(self, name: str) -> VariantPlan:
        try:
            return self.plans[name]
        except KeyError:
            raise KeyError(f"video {self.video_id}: no variant {name!r} (have {list(self.plans)})") from None

    def baseline_name(self) -> str:
        return next(name for name, plan in self.plans.items() if plan.spec.kind == "identity")

    def frame_table(self) -> pd.DataFrame:
        """Tidy per-frame table: video_id, variant, frame, window, original/target alignment, factor."""
        frames = np.arange(self.frame_count)
        parts = [
            pd.DataFrame(
                {
                    "video_id": pd.Series([self.video_id] * self.frame_count, dtype="string"),
                    "variant": name,
                    "kind": plan.spec.kind,
                    "frame": frames.astype(np.int64),
                    "window": list(self.frame_windows),
                    "original_alignment": self.original_alignment,
                    "target_alignment": plan.frame_target,
                    "factor": plan.frame_factor,
                }
            )
            for name, plan in self.plans.items()
        ]
        return pd.concat(parts, ignore_index=True)

    def scene_table(self) -> pd.DataFrame:
        """Tidy per-scene table with the scene's window (by its centre time) and targets."""
        rows = []
        for name, plan in self.plans.items():
            for index, ((start, stop), window) in enumerate(zip(self.scene_ranges, self.scene_windows, strict=False)):
                rows.append(
                    {
                        "video_id": self.video_id,
                        "variant": name,
                        "scene_index": index,
                        "start_frame": start,
                        "stop_frame": stop,
                        "window": window,
                        "original_alignment": float(self.scene_alignment[index]),
                        "target_alignment": float(plan.scene_target[index]),
                        "factor": plan.spec.control_factor(window),
                    }
                )
        table = pd.DataFrame(rows)
        table["video_id"] = table["video_id"].astype("string")
        return table

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the per-frame table atomically (video ids stay strings)."""
        with atomic_path(path) as tmp:
            self.frame_table().to_parquet(tmp, index=False)
        return Path(path)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        payload = {
            "video_id": self.video_id,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "scene_ranges": [list(r) for r in self.scene_ranges],
            "variants": [p.spec.to_dict() for p in self.plans.values()] + [s.to_dict() for s in self.imported_only],
            "not_rendered": self.not_rendered,
            # column-wise (one list per column): a 60 s ad's 12,600 frame rows as records cost
            # ~60 MB to parse; as columns a few MB (the loader reads either form)
            "frames": self.frame_table().astype({"video_id": object}).to_dict(orient="list"),
            "scenes": self.scene_table().astype({"video_id": object}).to_dict(orient="records"),
        }
        return atomic_write_text(path, json.dumps(payload, indent=1))


def validate_scene_ranges(
    video_id: str, scene_ranges: Sequence[Sequence[int]], frame_count: int
) -> tuple[tuple[int, int], ...]:
    """Scenes must tile [0, T) exactly: no gap, no overlap, none outside the video."""
    ranges = tuple((int(a), int(b)) for a, b in scene_ranges)
    if not ranges:
        raise ValueError(f"video {video_id}: no scenes given")
    expected = 0
    for index, (start, stop) in enumerate(ranges):
        if stop <= start:
            raise ValueError(f"video {video_id}: scene {index} [{start}, {stop}) is empty or reversed")
        if start != expected:
            kind = "gap" if start > expected else "overlap"
            raise ValueError(f"video {video_id}: scene {index} starts at frame {start}, expected {expected} ({kind})")
        expected = stop
    if expected != frame_count:
        raise ValueError(f"video {video_id}: scenes end at frame {expected}, the video has {frame_count} frames")
    return ranges


def plan_variants(
    video_id: str,
    alignment_per_frame: Sequence[float] | np.ndarray,
    fps: float,
    scene_ranges: Sequence[Sequence[int]] | None = None,
    specs: Iterable[VariantSpec | Mapping[str, Any]] = DEFAULT_VARIANTS,
) -> VariantPlans:
    """Plan every variant of one video from its per-frame alignment a_t.

    Creative arms (:data:`NOT_RENDERED_KINDS`) get no plan, so nothing renders them: they are
    listed in ``imported_only`` with the reason (``not_rendered``).

    ``scene_ranges`` are half-open frame ranges tiling the video (one scene when None). Frames
    take the window of their own centre time; scenes that of theirs, with the scene's original
    alignment the mean of its frames'.
    """
    values = np.asarray(alignment_per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"video {video_id}: alignment must be a non-empty 1-D per-frame array, got {values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"video {video_id}: alignment values must be finite and in [0, 1]")
    if not fps > 0:
        raise ValueError(f"video {video_id}: fps must be > 0, got {fps}")
    count = values.size
    ranges = validate_scene_ranges(video_id, scene_ranges if scene_ranges is not None else [(0, count)], count)
    duration = count / float(fps)
    frame_times = frame_centre_times(count, fps)
    frame_windows = tuple(window_of(t, duration) for t in frame_times)
    scene_times = np.array([(a + b) / 2.0 / fps for a, b in ranges])
    scene_windows = tuple(window_of(t, duration) for t in scene_times)
    scene_alignment = np.array([values[a:b].mean() for a, b in ranges])
    plans: dict[str, VariantPlan] = {}
    parsed = parse_variants(specs)
    for spec in (s for s in parsed if s.kind not in NOT_RENDERED_KINDS):
        factors = np.array([spec.control_factor(w) for w in frame_windows], dtype=np.float64)
        plans[spec.name] = VariantPlan(
            spec=spec,
            frame_factor=factors,
            frame_target=target_curve(values, frame_times, duration, spec),
            scene_target=target_curve(scene_alignment, scene_times, duration, spec),
        )
    return VariantPlans(
        video_id=video_id,
        fps=float(fps),
        frame_count=count,
        scene_ranges=ranges,
        original_alignment=values,
        frame_windows=frame_windows,
        scene_windows=scene_windows,
        scene_alignment=scene_alignment,
        plans=plans,
        imported_only=tuple(s for s in parsed if s.kind in NOT_RENDERED_KINDS),
    )


def load_variant_plans(path: str | os.PathLike[str]) -> VariantPlans:
    """Read plans written by :meth:`VariantPlans.to_json`.

    Plans are a pure function of (alignment, fps, scenes, specs), so they are rebuilt from the
    stored inputs and checked value for value against the stored targets; a file edited by hand
    or written by another version fails loudly instead of silently changing the experiment.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        frames = pd.DataFrame(payload["frames"])
        specs = [VariantSpec.from_dict(entry) for entry in payload["variants"]]
        first = specs[0].name
        original = (
            frames[frames["variant"] == first].sort_values("frame")["original_alignment"].to_numpy(dtype=np.float64)
        )
        plans = plan_variants(payload["video_id"], original, payload["fps"], payload["scene_ranges"], specs)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"variant plan file {path}: cannot be read ({exc})") from exc
    stored = frames.sort_values(["variant", "frame"])["target_alignment"].to_numpy(dtype=np.float64)
    rebuilt = plans.frame_table().sort_values(["variant", "frame"])["target_alignment"].to_numpy(dtype=np.float64)
    if stored.shape != rebuilt.shape or not np.allclose(stored, rebuilt, atol=1e-9):
        raise ValueError(f"variant plan file {path}: stored targets differ from the plan its inputs give")
    return plans
