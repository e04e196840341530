"""The variant stages: ``variant_plans``, ``variant_videos`` and ``variant_quality`` (with the manipulation check).

Videos whose keyword was screened, or whose product never appears, are skipped for editing:
:func:`run_plans` records the reason (``skipped.json``) and the later stages return it instead
of working, so every stage still finishes and says why nothing was edited.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from align_core.components import EditorChoice
from align_core.inputs.catalog import load_catalog
from align_core.io.atomic import atomic_path, atomic_write_text
from align_core.io.layout import DataLayout
from align_core.io.visuals import curves_plot
from align_core.measurement.perceptual_budget import DEFAULT_MAX_DELTA_E, DEFAULT_MIN_SSIM
from align_core.perception.control import load_control_tensors
from align_core.stages.attention import AttentionMeasure
from align_core.stages.checkpoint import read_checkpoint_pointer
from align_core.stimuli.plans import (
    DEFAULT_VARIANTS,
    VariantPlans,
    VariantSpec,
    load_variant_config,
    load_variant_plans,
    plan_variants,
)

if TYPE_CHECKING:
    from align_core.measurement.manipulation import VerificationSettings

__all__ = [
    "VariantPlanSettings",
    "VariantQualitySettings",
    "VariantVideoSettings",
    "lpips_frame_distance",
    "run_plans",
    "run_variant_quality",
    "run_variant_videos",
]

# -- settings -------------------------------------------------------------------------------------


class VariantPlanSettings(BaseModel):
    variants: list[dict] = Field(
        default_factory=lambda: [spec.to_dict() for spec in DEFAULT_VARIANTS],
        description="variant specs: name, window (none|early|middle|late|full), factor, kind (identity|boost|reduce|placebo), "
        "role (control|treatment|placebo)",
    )
    variants_file: str | None = Field(
        default=None,
        description="an experiment config or variant list (YAML) to plan from instead of `variants`: the same file "
        "align-ab-plan registers, so the rendered arms and the experiment's registry are one list",
    )


class VariantVideoSettings(BaseModel):
    """How variants are rendered (which editor renders them is the editor choice)."""

    keyframe_stride: int = Field(
        default=8, description="edit every k-th frame (and each scene/window start), propagate between"
    )
    propagation: str = Field(
        default="auto",
        description="auto (the editor's own: the salience filter edits every frame, ControlNet edits keyframes) | "
        "keyframes (edit keyframes, carry edits by DIS optical flow) | every_frame",
    )
    seed: int = Field(default=0, description="per-video editing seed (variants differ only in their control)")
    calibration_frames: int = Field(default=6, description="keyframes used to calibrate an editor that calibrates")
    encoder_preset: str = Field(
        default="auto",
        description="x264 preset of every variant (CRF 16): auto = veryfast below 1 megapixel, superfast at 1080x1920 "
        "and above (the same quality target, larger files, half the encoding time); or any x264 preset",
    )
    protect: bool = Field(
        default=True,
        description="copy protected regions (text overlays, user regions) from the source in every variant; "
        "False only to reproduce unprotected stimuli for comparison (the stimulus checks then fail)",
    )


class VariantQualitySettings(BaseModel):
    min_share: float = Field(default=0.25, description="achieved change must reach this share of the planned change")
    tolerance: float = Field(default=0.03, description="baseline and placebo: max |mean alignment difference|")
    measure_every: int = Field(default=2, description="score every k-th frame of each variant for the check")
    check_max_frames: int = Field(
        default=60,
        description="the check's scorers measure at most about this many frames per video: stride "
        "max(measure_every, ceil(frames / this)) within every scene-window segment, plus each segment's first and last frame "
        "(align_core.measurement.frame_sampling); 0: no cap",
    )
    max_frames: int = Field(
        default=150,
        description="quality metrics and the perceptual budget re-check: stride ceil(frames / this) within "
        "every scene-window segment, plus each segment's first and last frame; 0: every frame (the editor checks its "
        "budget on every frame it writes; this is the independent re-check)",
    )
    analysis_max_side: int = Field(
        default=512,
        description="quality metrics and the check's scorers run on frames block-averaged by the smallest "
        "integer factor that brings the long side to at most this (1080x1920: factor 4, 270x480, like the budget's own SSIM scale; the demo's 288x512: "
        "full resolution); 0: full resolution. The budget is measured at full resolution",
    )
    lpips_every: int = Field(default=10)
    independent_scorers: list[str] = Field(
        default_factory=lambda: ["spectral_residual", "itti_koch", "image_signature"],
        description="independent saliency models (align_core.perception.attention.independent) whose majority must agree",
    )
    min_ssim: float = Field(
        default=DEFAULT_MIN_SSIM,
        description="perceptual budget: per-frame SSIM vs baseline outside product and protected regions",
    )
    max_delta_e: float = Field(
        default=DEFAULT_MAX_DELTA_E,
        description="perceptual budget: per-frame mean CIEDE2000 vs baseline outside product and protected regions",
    )
    budget_limits: dict[str, float] = Field(
        default_factory=dict,
        description="the perceptual budget's other limits by their PerceptualBudget field name (e.g. max_visible_share, "
        "min_sharpness); unset: align_core.measurement.perceptual_budget's defaults",
    )
    min_protected_psnr_db: float = Field(
        default=40.0, description="PSNR vs baseline inside protected regions (capped by the codec's own PSNR there)"
    )
    max_cer: float = Field(default=0.02, description="mean character error rate of protected text vs baseline")
    ocr_frames: int = Field(default=8, description="frames with text compared by OCR per video")

    def verification(self) -> VerificationSettings:
        """The check's budget and vote settings (builds the budget, so a bad limit is refused here)."""
        from align_core.measurement.manipulation import VerificationSettings

        return VerificationSettings(
            min_ssim=self.min_ssim,
            max_delta_e=self.max_delta_e,
            budget_limits=tuple(sorted(self.budget_limits.items())),
        )


PROPAGATION_MODES: dict[str, bool | None] = {"auto": None, "keyframes": False, "every_frame": True}


def skip_reason(layout: DataLayout, video_id: str) -> str | None:
    """Why this video is not edited (recorded by :func:`run_plans`), or None."""
    marker = layout.artifact("variant_plans", "skipped", video_id)
    return json.loads(marker.read_text())["reason"] if marker.exists() else None


# -- variant_plans --------------------------------------------------------------------------------


@dataclass
class PlansResult:
    skipped_reason: str | None
    specs: list[VariantSpec] = field(default_factory=list)
    plans: VariantPlans | None = None
    scenes: pd.DataFrame | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def run_plans(layout: DataLayout, video_id: str, settings: VariantPlanSettings) -> PlansResult:
    """Target alignment curves per frame and scene for every configured variant, or the reason to skip."""
    out_dir = layout.artifact_dir("variant_plans", video_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    control = load_control_tensors(layout.artifact("control_tensors", "control", video_id))
    reason = None
    if not catalog.keyword.segmentable:
        reason = f"keyword screened ({catalog.keyword.category}): {catalog.keyword.reason}"
    elif not control.masks.any():
        reason = "the product never appears (every keyword mask is empty): nothing to edit"
    plans_path = layout.artifact("variant_plans", "plans", video_id)
    skip_path = layout.artifact("variant_plans", "skipped", video_id)
    if reason:
        atomic_write_text(skip_path, json.dumps({"video_id": video_id, "reason": reason}))
        plans_path.unlink(missing_ok=True)
        return PlansResult(reason)
    skip_path.unlink(missing_ok=True)
    specs = (
        load_variant_config(settings.variants_file)
        if settings.variants_file
        else [VariantSpec.from_dict(entry) for entry in settings.variants]
    )
    plans = plan_variants(video_id, control.alignment_per_frame(), catalog.probe.fps, catalog.scene_ranges, specs)
    plans.to_json(plans_path)
    scenes = plans.scene_table()
    scenes_path = layout.artifact("variant_plans", "scenes", video_id)
    with atomic_path(scenes_path) as tmp:
        scenes.to_parquet(tmp, index=False)
    times = (np.arange(plans.frame_count) + 0.5) / catalog.probe.fps
    plot = curves_plot(
        layout.artifact("variant_plans", "targets", video_id),
        times,
        {name: plan.frame_target for name, plan in plans.plans.items()},
        title=f"{video_id}: target alignment per variant",
        ylabel="alignment a_t",
        boundaries=[catalog.probe.duration_s / 3, 2 * catalog.probe.duration_s / 3],
        styles={"baseline": "k-", "placebo": "k:"},
    )
    return PlansResult(None, specs, plans, scenes, {"plans": plans_path, "scenes": scenes_path, "targets": plot})


# -- variant_videos -------------------------------------------------------------------------------


@dataclass
class VariantVideosResult:
    skipped_reason: str | None
    outcome: Any = None  # align_core.stimuli.editing.pipeline.PipelineResult
    editor_name: str = ""
    editor_lineage: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    rows: pd.DataFrame | None = None
    frames_edited: int = 0
    seconds: float = 0.0
    protect: Any = None  # align_core.perception.protect.ProtectedRegions (None when protection is switched off)


def run_variant_videos(
    layout: DataLayout,
    video_id: str,
    editor: EditorChoice,
    measure: AttentionMeasure,
    settings: VariantVideoSettings,
    device: str = "cpu",
) -> VariantVideosResult:
    """Render every planned variant with the chosen editor (calibrated against ``measure`` when it calibrates).

    ``editor`` must be resolved. Writes the variant mp4s, comparison, contact sheet and manifest
    (the renderer's) and ``variants.parquet`` (one row per variant with its lineage).
    """
    from align_core.stimuli.editing.pipeline import calibrate_and_render

    rows_path = layout.artifact("variant_videos", "rows", video_id)
    reason = skip_reason(layout, video_id)
    if reason:
        rows_path.unlink(missing_ok=True)
        return VariantVideosResult(reason)
    if settings.propagation not in PROPAGATION_MODES:
        raise ValueError(f"propagation {settings.propagation!r} is not one of {sorted(PROPAGATION_MODES)}")
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    plans = load_variant_plans(layout.artifact("variant_plans", "plans", video_id))
    control = load_control_tensors(layout.artifact("control_tensors", "control", video_id))
    checkpoint = read_checkpoint_pointer(layout)
    uses_checkpoint = editor.needs_checkpoint
    built = editor.build(
        prompt=catalog.keyword.keyword, device=device, checkpoint=checkpoint if uses_checkpoint else None
    )
    from align_core.perception.attention import load_attention_maps
    from align_core.perception.protect import load_protected_regions

    attention_scorer = load_attention_maps(layout.artifact("attention_maps", "maps", video_id)).scorer_id
    protect = load_protected_regions(layout.artifact_dir("protected_regions", video_id)) if settings.protect else None
    started = time.perf_counter()
    outcome = calibrate_and_render(
        catalog.probe.path,
        plans,
        control.masks,
        control.attention,
        built,
        layout.artifact_dir("variant_videos", video_id),
        measure,
        calibration_frames=settings.calibration_frames,
        keyframe_stride=settings.keyframe_stride,
        seed=settings.seed,
        edit_every_frame=PROPAGATION_MODES[settings.propagation],
        protect=protect,
        encoder_preset=settings.encoder_preset,
        extra_lineage={
            "video_sha256": catalog.probe.sha256,
            "attention_scorer": attention_scorer,
            "controlnet_checkpoint_sha256": checkpoint["weights_sha256"] if checkpoint else None,
            "controlnet_checkpoint_used": uses_checkpoint,
        },
    )
    seconds = time.perf_counter() - started
    render = outcome.render
    lineage = built.lineage()
    checkpoint_used = checkpoint["weights_sha256"] if checkpoint and uses_checkpoint else None
    rows = _variant_rows(layout, video_id, render, built.name, lineage, checkpoint_used, settings.seed, catalog)
    with atomic_path(rows_path) as tmp:
        rows.to_parquet(tmp, index=False)
    return VariantVideosResult(
        None,
        outcome,
        built.name,
        lineage,
        checkpoint,
        rows,
        plans.frame_count * len(render.variant_paths),
        seconds,
        protect,
    )


def _variant_rows(
    layout: DataLayout,
    video_id: str,
    render: Any,
    editor_name: str,
    lineage: dict[str, Any],
    checkpoint_sha256: str | None,
    seed: int,
    catalog: Any,
) -> pd.DataFrame:
    """``variants.parquet``: one row per rendered variant with its lineage."""
    return pd.DataFrame(
        [
            {
                # relative to the data directory, so a moved data directory stays valid
                "video_id": video_id,
                "variant": name,
                "path": str(Path(path).resolve().relative_to(layout.root.resolve())),
                "sha256": render.manifest["variants"][name]["sha256"],
                "editor": editor_name,
                "editor_lineage": json.dumps(lineage, sort_keys=True, default=str),
                "checkpoint_sha256": checkpoint_sha256,
                "seed": seed,
                "keyframe_share": render.keyframe_share,
                "source_sha256": catalog.probe.sha256,
            }
            for name, path in render.variant_paths.items()
        ]
    )


# -- variant_quality ------------------------------------------------------------------------------


@dataclass
class VariantQualityResult:
    skipped_reason: str | None
    quality: pd.DataFrame | None = None
    report: Any = None  # align_core.measurement.manipulation.ManipulationReport
    thresholds: Any = None  # align_core.measurement.manipulation.CheckThresholds
    lpips_backbone_state: str = ""
    eligibility: pd.DataFrame | None = (
        None  # per variant: eligible, exclusion_reason (align_core.experiments.eligibility)
    )
    paths: dict[str, Path] = field(default_factory=dict)
    stimulus: Any = None  # align_core.measurement.stimulus_checks.StimulusReport: protected PSNR and OCR per variant
    stimulus_card: str = ""  # the per-video stimulus card (HTML)
    verification: Any = (
        None  # align_core.measurement.manipulation.VerificationSettings (budget, placebo magnitude range)
    )
    independent_ids: dict[str, str] = field(default_factory=dict)  # independent scorer -> its scorer id
    faces: str = ""  # what the protected regions say about faces


#: LPIPS compares frames area-averaged to this long side (its AlexNet features are computed at
#: 64-256 px in the LPIPS paper's evaluations); at 288x512 it cost 0.25-0.7 s a call, a third of
#: the quality stage, and a quarter of that at 144x256.
LPIPS_MAX_SIDE = 256


def lpips_frame_distance(alexnet_path: str | Path | None = None, max_side: int = LPIPS_MAX_SIDE):
    """(LPIPS(a, b) for two RGB uint8 frames, the LPIPS backbone's state): the quality stage's perceptual distance.

    Frames longer than ``max_side`` are area-averaged to it first (recorded in the state string).
    """
    import cv2
    import torch

    from align_core.stimuli.diffusion import LPIPS

    lpips = LPIPS(alexnet_path)  # a missing file is named in its "random-alexnet" state

    def prepared(x: np.ndarray) -> torch.Tensor:
        height, width = x.shape[:2]
        if max(height, width) > max_side:
            scale = max_side / max(height, width)
            x = cv2.resize(
                x, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
            )
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 127.5 - 1

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        with torch.no_grad():
            return float(lpips(prepared(a), prepared(b)).item())

    return distance, f"{lpips.backbone_state}; frames compared at a long side of at most {max_side} px"


def run_variant_quality(
    layout: DataLayout,
    video_id: str,
    measure: AttentionMeasure,
    settings: VariantQualitySettings,
    *,
    lpips: bool = True,
) -> VariantQualityResult:
    """Temporal consistency, fidelity outside the editable region, LPIPS, the manipulation check
    measured with ``measure`` (the attention stage's own scorer and procedure) and the stimulus
    checks; a variant is eligible only when it passed both checks (:mod:`align_core.experiments.eligibility`)."""
    from align_core.experiments.eligibility import eligibility_table
    from align_core.measurement.manipulation import CheckThresholds
    from align_core.perception.attention.independent import SaliencyModelScorer
    from align_core.perception.protect import load_protected_regions
    from align_core.stages.checkpoint import alexnet_weights
    from align_core.stimuli.editing.pipeline import edit_limits_from_manifest

    quality_path, manipulation_path, eligibility_path = (
        layout.artifact("variant_quality", role, video_id) for role in ("quality", "manipulation", "eligibility")
    )
    # A verdict stands only for the render it checked: drop the old one before checking again,
    # so a failed check leaves the variants "unchecked", never eligible by an earlier verdict.
    eligibility_path.unlink(missing_ok=True)
    stimulus_paths = {
        role: layout.artifact("variant_quality", role, video_id)
        for role in ("stimulus", "stimulus_ocr", "stimulus_card", "scorers")
    }
    reason = skip_reason(layout, video_id)
    if reason:
        for path in (quality_path, manipulation_path, *stimulus_paths.values()):
            path.unlink(missing_ok=True)
        return VariantQualityResult(reason)
    verification = settings.verification()  # a misspelt or out-of-range limit fails here, before any frame is read
    quality_path.parent.mkdir(parents=True, exist_ok=True)
    inputs = _RenderedVideo.load(layout, video_id)
    catalog, plans, variant_paths = inputs.catalog, inputs.plans, inputs.variant_paths
    lpips_fn, lpips_state = lpips_frame_distance(alexnet_weights(layout)) if lpips else (None, "not computed")
    samples = _frame_samples(plans, settings)
    quality_pass = _quality_pass(inputs, settings, lpips_fn, lpips_state, samples[0])
    thresholds = CheckThresholds(min_share=settings.min_share, tolerance=settings.tolerance)
    independent = {name: SaliencyModelScorer(name) for name in settings.independent_scorers}
    manifest_path = layout.artifact_dir("variant_videos", video_id) / "manifest.json"
    limits = edit_limits_from_manifest(json.loads(manifest_path.read_text())) if manifest_path.exists() else None
    protect = load_protected_regions(layout.artifact_dir("protected_regions", video_id))
    stimulus_pass = _stimulus_pass(video_id, catalog, variant_paths, plans, protect, settings)

    checks = (independent, thresholds, verification)
    report = _verify(inputs, measure, settings, checks, limits, protect, samples, (quality_pass, stimulus_pass))
    quality = quality_pass.table()
    stimulus = stimulus_pass.report()
    card, faces = _stimulus_outputs(layout, video_id, stimulus, protect, report, stimulus_paths)
    rendered = pd.read_parquet(layout.artifact("variant_videos", "rows", video_id))
    eligibility = eligibility_table(
        video_id, report.verdicts, dict(zip(rendered["variant"], rendered["sha256"], strict=False)), stimulus.failures()
    )
    _write_tables(
        (quality, quality_path),
        (report.table, manipulation_path),
        (report.scorer_table, stimulus_paths["scorers"]),
        (eligibility, eligibility_path),
    )
    plot = target_vs_achieved_plot(layout.artifact("variant_quality", "plot", video_id), report.table)
    return VariantQualityResult(
        None,
        quality,
        report,
        thresholds,
        lpips_state,
        eligibility,
        {
            "quality": quality_path,
            "manipulation": manipulation_path,
            "eligibility": eligibility_path,
            "plot": plot,
            **stimulus_paths,
        },
        stimulus=stimulus,
        stimulus_card=card,
        faces=faces,
        verification=verification,
        independent_ids={name: fn.scorer_id for name, fn in independent.items()},
    )


def _frame_samples(plans: VariantPlans, settings: VariantQualitySettings) -> tuple[Any, Any]:
    """The frames the quality metrics and budget measure, and the (sparser) frames the check measures."""
    from align_core.measurement.frame_sampling import FrameSample

    sample = FrameSample.build(plans.frame_count, plans.scene_ranges, plans.frame_windows, settings.max_frames)
    check_sample = FrameSample.build(
        plans.frame_count,
        plans.scene_ranges,
        plans.frame_windows,
        settings.check_max_frames,
        min_stride=settings.measure_every,
    )
    return sample, check_sample


@dataclass
class _RenderedVideo:
    """What the quality stage reads of one rendered video."""

    catalog: Any
    plans: VariantPlans
    control: Any
    variant_paths: dict[str, Path]

    @classmethod
    def load(cls, layout: DataLayout, video_id: str) -> _RenderedVideo:
        catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
        plans = load_variant_plans(layout.artifact("variant_plans", "plans", video_id))
        control = load_control_tensors(layout.artifact("control_tensors", "control", video_id))
        return cls(catalog, plans, control, variant_video_paths(layout, video_id, plans))


def _quality_pass(video: _RenderedVideo, settings: VariantQualitySettings, lpips_fn, lpips_state: str, sample):
    """evaluate_variants' measurements, fed by the manipulation check's decode (one decode per video for both)."""
    from align_core.measurement.quality import QualityPass

    return QualityPass(
        video.catalog.probe.path,
        video.variant_paths,
        video.plans,
        video.control.masks,
        lpips_fn=lpips_fn,
        lpips_backbone_state=lpips_state,
        lpips_every=settings.lpips_every,
        analysis_max_side=settings.analysis_max_side or None,
        frames=sample.frames,
    )


def _verify(
    video: _RenderedVideo,
    measure: AttentionMeasure,
    settings: VariantQualitySettings,
    checks: tuple[Any, Any, Any],
    limits: Any,
    protect: Any,
    samples: tuple[Any, Any],
    passes: tuple[Any, ...],
) -> Any:
    """The manipulation check (``checks``: independent scorers, thresholds, verification settings);
    its decode feeds ``passes`` every frame (protected pixels are checked on each one)."""
    from align_core.measurement.manipulation import verify_variants

    independent, thresholds, verification = checks
    sample, check_sample = samples
    return verify_variants(
        video.plans,
        video.catalog.probe.path,
        video.variant_paths,
        video.control.masks,
        measure,
        independent,
        thresholds,
        verification,
        every=settings.measure_every,
        limits=limits,
        protect=protect,
        frames=check_sample.frames,
        budget_frames=sample.frames,
        analysis_max_side=settings.analysis_max_side or None,
        on_frame=_feed(*passes),
    )


def _feed(*passes: Any) -> Any:
    """An ``on_frame`` callback handing each decoded frame to every pass, in order."""

    def on_frame(index: int, frames: tuple[np.ndarray, ...]) -> None:
        for frame_pass in passes:
            frame_pass.add(index, frames)

    return on_frame


def _write_tables(*tables: tuple[pd.DataFrame, Path]) -> None:
    """Each ``(table, path)`` as parquet, atomically."""
    for table, path in tables:
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)


def _stimulus_pass(
    video_id: str,
    catalog,
    variant_paths: dict[str, Path],
    plans: VariantPlans,
    protect,
    settings: VariantQualitySettings,
):
    """The stimulus checks (protected pixels vs baseline, the same OCR text), fed by the manipulation check's decode."""
    from align_core.measurement.stimulus_checks import StimulusPass, StimulusThresholds
    from align_core.perception.protect import TextReader

    return StimulusPass(
        video_id,
        catalog.probe.path,
        variant_paths,
        plans.baseline_name(),
        protect,
        TextReader(threads=1) if protect.text_keyframes() else None,
        StimulusThresholds(
            min_psnr_db=settings.min_protected_psnr_db, max_cer=settings.max_cer, ocr_frames=settings.ocr_frames
        ),
        protect.text_keyframes(),
        scenes=catalog.scene_ranges,
    )


def _stimulus_outputs(
    layout: DataLayout, video_id: str, stimulus, protect, report, paths: dict[str, Path]
) -> tuple[str, str]:
    """Write the stimulus tables and the per-video stimulus card; returns (card HTML, what the regions say about faces)."""
    from align_core.measurement.stimulus_checks import stimulus_card_html

    with atomic_path(paths["stimulus"]) as tmp:
        stimulus.table().to_parquet(tmp, index=False)
    with atomic_path(paths["stimulus_ocr"]) as tmp:
        stimulus.ocr.to_parquet(tmp, index=False)
    budget_columns = [
        "variant",
        "frames",
        "min_ssim",
        "max_delta_e",
        "mean_delta_e",
        "max_visible_share",
        "min_patch_ssim",
        "min_sharpness",
        "min_product_ssim",
        "frames_over_budget",
        "budget_passed",
        "budget_exceeded",
        "placebo_magnitude_ratio",
    ]
    faces = protect.summary()["faces"]
    card = stimulus_card_html(
        video_id,
        stimulus,
        report.scorer_table.rename(columns={"agrees": "passed"}),
        scorer_name=report.attention_fn_name,
        budget=report.budget[[c for c in budget_columns if c in report.budget]] if len(report.budget) else None,
        contact_sheet=layout.artifact_dir("variant_videos", video_id) / "contact_sheet.png",
        notes={"faces": faces},
    )
    atomic_write_text(paths["stimulus_card"], card)
    return card, faces


def variant_video_paths(layout: DataLayout, video_id: str, plans: VariantPlans) -> dict[str, Path]:
    """Where :func:`run_variant_videos` put each planned variant's mp4."""
    paths = {name: layout.variant_video(video_id, name) for name in plans.plans}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"video {video_id}: variants not rendered ({', '.join(missing)}): materialize variant_videos first"
        )
    return paths


def target_vs_achieved_plot(path: Path, table: pd.DataFrame) -> Path:
    """Planned vs achieved alignment change per variant and window (points on the diagonal hit the target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=100)
    for variant, rows in table.groupby("variant"):
        ax.scatter(rows["target_delta"], rows["achieved_delta"], label=variant, s=28)
    low = float(min(table["target_delta"].min(), table["achieved_delta"].min(), 0)) - 0.02
    high = float(max(table["target_delta"].max(), table["achieved_delta"].max(), 0)) + 0.02
    ax.plot([low, high], [low, high], "k:", linewidth=0.8)
    ax.axhline(0, color="0.7", linewidth=0.6)
    ax.axvline(0, color="0.7", linewidth=0.6)
    ax.set_xlabel("planned change in alignment")
    ax.set_ylabel("achieved change (measured)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
