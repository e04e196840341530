"""Per-video ``variant_plans``, ``variant_videos`` and ``variant_quality`` (with the manipulation check).

Videos whose keyword was screened, or whose product never appears, are skipped for editing:
each asset still materializes, with ``skipped`` and the reason in its metadata, so backfills
finish and the UI says why nothing was edited.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from align_assets.assets.attention import ATTENTION_FILE, AttentionSettings, build_scorer
from align_assets.assets.checkpoint import CURRENT_FILE, GPU_OP_TAGS, alexnet_weights
from align_assets.assets.control import CONTROL_FILE
from align_assets.metadata import png_markdown, table_markdown
from align_assets.partitions import CHEAP_BACKFILL, ONE_VIDEO_PER_RUN, materialize_each_video, video_partitions
from align_assets.resources import PlatformResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.atomic import atomic_path, atomic_write_text
from align_core.attention import AttentionConfig, attention_map, load_attention_maps
from align_core.catalog import load_catalog
from align_core.control import load_control_tensors
from align_core.editing.pipeline import calibrate_and_render
from align_core.editing.salience import SalienceEditor
from align_core.attention.independent import SaliencyModelScorer, scorer_cards
from align_core.editing.pipeline import edit_limits_from_manifest
from align_core.eligibility import ELIGIBILITY_FILE, eligibility_table
from align_core.manipulation import CheckThresholds, VerificationSettings, verify_variants
from align_core.protect import TextReader, load_protected_regions
from align_core.quality import evaluate_variants
from align_core.stimulus_checks import StimulusThresholds, check_stimuli, stimulus_card_html
from align_core.variants import DEFAULT_VARIANTS, VariantSpec, load_variant_config, load_variant_plans, plan_variants
from align_core.visuals import curves_plot

PLANS_FILE = "plans.json"
SCORERS_FILE = "manipulation_scorers.parquet"
SKIP_FILE = "skipped.json"


class VariantPlanSettings(Config):
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


class VariantVideoSettings(Config):
    editor: str | None = Field(default=None, description="salience | controlnet (default: the profile's)")
    keyframe_stride: int = Field(default=8, description="edit every k-th frame (and each scene/window start), propagate between")
    propagation: str = Field(
        default="auto",
        description="auto (the editor decides: the salience filter edits every frame, ControlNet edits keyframes) | "
        "keyframes (edit keyframes, carry edits by DIS optical flow) | every_frame",
    )
    seed: int = Field(default=0, description="per-video editing seed (variants differ only in their control)")
    calibration_frames: int = Field(default=6, description="keyframes used to calibrate the salience editor's strength")
    controlnet_steps: int = Field(default=20)
    controlnet_strength: float = Field(default=0.5)
    controlnet_guidance: float = Field(default=1.0)
    controlnet_scheduler: str = Field(default="ddim")
    controlnet_resolution: int | None = Field(default=None, description="edit at this size (None: the checkpoint's training size x8)")
    scorer: str | None = Field(default=None, description="attention scorer for calibration (default: the profile's)")
    llava_model_path: str | None = Field(default=None, description="local LLaVA directory when the scorer is llava")
    min_ssim: float = Field(default=0.90, description="perceptual budget: per-frame SSIM outside product and protected regions")
    max_delta_e: float = Field(default=6.0, description="perceptual budget: per-frame mean CIEDE2000 outside product and protected regions")
    protect: bool = Field(
        default=True,
        description="copy protected regions (text overlays, user regions) from the source in every variant; "
        "False only to reproduce unprotected stimuli for comparison (the stimulus checks then fail)",
    )


class VariantQualitySettings(Config):
    min_share: float = Field(default=0.25, description="achieved change must reach this share of the planned change")
    tolerance: float = Field(default=0.03, description="baseline and placebo: max |mean alignment difference|")
    measure_every: int = Field(default=2, description="score every k-th frame of each variant for the check")
    lpips_every: int = Field(default=10)
    scorer: str | None = Field(default=None, description="attention scorer that measures the variants (default: the profile's)")
    llava_model_path: str | None = Field(default=None, description="local LLaVA directory when the scorer is llava")
    independent_scorers: list[str] = Field(
        default_factory=lambda: ["spectral_residual", "itti_koch", "boolean_map"],
        description="independent saliency models (align_core.attention.independent) whose majority must agree",
    )
    min_ssim: float = Field(default=0.90, description="perceptual budget: per-frame SSIM vs baseline outside product and protected regions")
    max_delta_e: float = Field(default=6.0, description="perceptual budget: per-frame mean CIEDE2000 vs baseline outside product and protected regions")
    min_protected_psnr_db: float = Field(default=40.0, description="PSNR vs baseline inside protected regions (capped by the codec's own PSNR there)")
    max_cer: float = Field(default=0.02, description="mean character error rate of protected text vs baseline")
    ocr_frames: int = Field(default=8, description="frames with text compared by OCR per video")


def _skip_reason(layout, video_id: str) -> str | None:
    marker = layout.artifact_dir("variant_plans", video_id) / SKIP_FILE
    return json.loads(marker.read_text())["reason"] if marker.exists() else None


def _skipped_metadata(reason: str) -> dict:
    return {"skipped": True, "reason": MetadataValue.text(reason)}


def _skipped(reason: str) -> MaterializeResult:
    return MaterializeResult(metadata=_skipped_metadata(reason))


@asset(
    partitions_def=video_partitions,
    deps=["control_tensors", "video_catalog"],
    group_name="variants",
    automation_condition=AutomationCondition.eager(),
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "json"},
)
def variant_plans(context: AssetExecutionContext, platform: PlatformResource, config: VariantPlanSettings) -> MaterializeResult:
    """Seven (configurable) target alignment curves per frame and scene, by the centre-time thirds rule."""
    return materialize_each_video(context, lambda video_id: plans_for_video(platform, config, video_id))


def plans_for_video(platform: PlatformResource, config: VariantPlanSettings, video_id: str) -> dict:
    layout = platform.layout
    out_dir = layout.artifact_dir("variant_plans", video_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    control = load_control_tensors(layout.artifact_dir("control_tensors", video_id) / CONTROL_FILE)
    alignment = control.alignment_per_frame()
    reason = None
    if not catalog.keyword.segmentable:
        reason = f"keyword screened ({catalog.keyword.category}): {catalog.keyword.reason}"
    elif not control.masks.any():
        reason = "the product never appears (every keyword mask is empty): nothing to edit"
    if reason:
        atomic_write_text(out_dir / SKIP_FILE, json.dumps({"video_id": video_id, "reason": reason}))
        (out_dir / PLANS_FILE).unlink(missing_ok=True)
        return _skipped_metadata(reason)
    (out_dir / SKIP_FILE).unlink(missing_ok=True)
    specs = (load_variant_config(config.variants_file) if config.variants_file
             else [VariantSpec.from_dict(entry) for entry in config.variants])
    plans = plan_variants(video_id, alignment, catalog.probe.fps, catalog.scene_ranges, specs)
    plans.to_json(out_dir / PLANS_FILE)
    scenes = plans.scene_table()
    with atomic_path(out_dir / "plan_scenes.parquet") as tmp:
        scenes.to_parquet(tmp, index=False)
    times = (np.arange(plans.frame_count) + 0.5) / catalog.probe.fps
    plot = curves_plot(
        out_dir / "targets.png", times, {name: plan.frame_target for name, plan in plans.plans.items()},
        title=f"{video_id}: target alignment per variant", ylabel="alignment a_t",
        boundaries=[catalog.probe.duration_s / 3, 2 * catalog.probe.duration_s / 3],
        styles={"baseline": "k-", "placebo": "k:"},
    )
    return {
        "skipped": False,
        "variants": MetadataValue.json([spec.to_dict() for spec in specs]),
        "targets": png_markdown(plot, alt="target curves"),
        "scene_targets": table_markdown(scenes, max_rows=40),
        "plan": MetadataValue.path(str(out_dir / PLANS_FILE)),
    }


def _attention_fn(platform: PlatformResource, settings: VariantVideoSettings | VariantQualitySettings):
    """The attention map the check measures with: the same scorer and procedure as attention_maps."""
    scorer = build_scorer(AttentionSettings(scorer=settings.scorer, llava_model_path=settings.llava_model_path), platform)
    procedure = AttentionConfig()

    def score(frame: np.ndarray) -> np.ndarray:
        return attention_map(frame, scorer, procedure)

    score.name = f"attention_map[{scorer.scorer_id}]"
    return score


def _build_editor(platform: PlatformResource, settings: VariantVideoSettings, prompt: str):
    name = settings.editor or platform.defaults.editor
    if name == "salience":
        return SalienceEditor(min_ssim=settings.min_ssim, max_delta_e=settings.max_delta_e)
    if name != "controlnet":
        raise ValueError(f"unknown editor {name!r}: use salience or controlnet")
    from align_core.diffusion import load_backbone
    from align_core.editing.controlnet_editor import ControlNetEditor

    current_path = platform.layout.artifact_dir("controlnet_checkpoint") / CURRENT_FILE
    if not current_path.exists():
        raise FileNotFoundError(f"{current_path} does not exist: materialize controlnet_checkpoint first")
    current = json.loads(current_path.read_text())
    backbone = load_backbone(current["backbone"], kind=current["backbone_kind"], device=platform.defaults.device)
    return ControlNetEditor(
        backbone, current["controlnet_dir"], steps=settings.controlnet_steps, strength=settings.controlnet_strength,
        guidance_scale=settings.controlnet_guidance, scheduler=settings.controlnet_scheduler,
        resolution=settings.controlnet_resolution, device=platform.defaults.device, prompt=prompt,
    )


@asset(
    partitions_def=video_partitions,
    deps=["variant_plans", "keyword_masks", "attention_maps", "controlnet_checkpoint", "protected_regions"],
    group_name="variants",
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    automation_condition=AutomationCondition.eager(),
    kinds={"python", "video"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def variant_videos(context: AssetExecutionContext, platform: PlatformResource, config: VariantVideoSettings) -> MaterializeResult:
    """Seven H.264 variants with the source's audio, a side-by-side video, a contact sheet, a manifest.

    Keyframes are edited (salience operations or ControlNet img2img) and carried to the other
    frames by DIS optical flow within each scene; pixels a variant may not change are copied,
    protected regions (text overlays, user regions) from the source in every variant.
    """
    video_id = context.partition_key
    layout = platform.layout
    reason = _skip_reason(layout, video_id)
    if reason:
        (layout.artifact_dir("variant_videos", video_id) / "variants.parquet").unlink(missing_ok=True)
        return _skipped(reason)
    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    plans = load_variant_plans(layout.artifact_dir("variant_plans", video_id) / PLANS_FILE)
    control = load_control_tensors(layout.artifact_dir("control_tensors", video_id) / CONTROL_FILE)
    editor = _build_editor(platform, config, catalog.keyword.keyword)
    modes = {"auto": None, "keyframes": False, "every_frame": True}
    if config.propagation not in modes:
        raise ValueError(f"propagation {config.propagation!r} is not one of {sorted(modes)}")
    attention_maps = load_attention_maps(layout.artifact_dir("attention_maps", video_id) / ATTENTION_FILE)
    current_path = layout.artifact_dir("controlnet_checkpoint") / CURRENT_FILE
    checkpoint = json.loads(current_path.read_text()) if current_path.exists() else None
    protect = load_protected_regions(layout.artifact_dir("protected_regions", video_id))
    if not config.protect:
        context.log.warning(f"video {video_id}: protect=False: text overlays and user regions may be edited in every variant")
    started = time.perf_counter()
    outcome = calibrate_and_render(
        catalog.probe.path, plans, control.masks, control.attention, editor,
        layout.artifact_dir("variant_videos", video_id), _attention_fn(platform, config),
        calibration_frames=config.calibration_frames, keyframe_stride=config.keyframe_stride, seed=config.seed,
        edit_every_frame=modes[config.propagation], protect=protect if config.protect else None,
        extra_lineage={
            "video_sha256": catalog.probe.sha256,
            "attention_scorer": attention_maps.scorer_id,
            "controlnet_checkpoint_sha256": checkpoint["weights_sha256"] if checkpoint else None,
            "controlnet_checkpoint_used": editor.name == "controlnet",
        },
    )
    result = outcome.render
    seconds = time.perf_counter() - started
    lineage = editor.lineage()
    rows = pd.DataFrame(
        [
            {
                # relative to the data directory, so a moved data directory stays valid
                "video_id": video_id, "variant": name, "path": str(Path(path).resolve().relative_to(layout.root.resolve())),
                "sha256": result.manifest["variants"][name]["sha256"],
                "editor": editor.name, "editor_lineage": json.dumps(lineage, sort_keys=True, default=str),
                "checkpoint_sha256": checkpoint["weights_sha256"] if checkpoint and editor.name == "controlnet" else None,
                "seed": config.seed, "keyframe_share": result.keyframe_share, "source_sha256": catalog.probe.sha256,
            }
            for name, path in result.variant_paths.items()
        ]
    )
    with atomic_path(result.output_dir / "variants.parquet") as tmp:
        rows.to_parquet(tmp, index=False)
    frames_edited = plans.frame_count * len(result.variant_paths)
    return MaterializeResult(
        metadata={
            "skipped": False,
            "contact_sheet": png_markdown(result.contact_sheet_path, alt="contact sheet", max_width=900),
            "comparison_video": MetadataValue.path(str(result.comparison_path)),
            "variant_videos": MetadataValue.json({name: str(path) for name, path in result.variant_paths.items()}),
            "editor": editor.name,
            "editor_lineage": MetadataValue.json(lineage),
            "keyframe_share": MetadataValue.float(round(result.keyframe_share, 3)),
            "propagation": MetadataValue.text(result.manifest["config"]["keyframe_placement"]),
            "calibration": MetadataValue.json([vars(point) for point in outcome.calibration]),
            "variant_frames_per_second": round(frames_edited / seconds, 1),
            "timings_s": MetadataValue.json({k: round(v, 2) for k, v in result.timings.items()}),
            "manifest": MetadataValue.path(str(result.manifest_path)),
            "checkpoint_sha256": checkpoint["weights_sha256"] if checkpoint else "none",
            "protected_share": MetadataValue.float(round(result.manifest["protect"]["protected_share"], 4)),
            "protect": config.protect,
            "faces": MetadataValue.text(protect.summary()["faces"]),
        }
    )


@asset(
    partitions_def=video_partitions,
    deps=["variant_videos", "protected_regions"],
    group_name="variants",
    check_specs=[
        AssetCheckSpec(
            "manipulation_passed", asset="variant_quality",
            description="Each variant moved the product's share of attention as planned (sign and share) under the "
            "calibrating scorer AND a majority of independent scorers; baseline and placebo within tolerance.",
        ),
        AssetCheckSpec(
            "perceptual_budget", asset="variant_quality",
            description="Every frame of every variant keeps SSIM and mean CIEDE2000 vs baseline outside product and "
            "protected regions within the budget; the placebo matches the matched boost's magnitude.",
        ),
        AssetCheckSpec(
            "protected_unchanged", asset="variant_quality",
            description="Inside protected regions every variant equals baseline up to codec noise: PSNR vs baseline "
            ">= min(40 dB, the codec's own PSNR there) - 3 dB, pooled and per frame.",
        ),
        AssetCheckSpec(
            "information_preserved", asset="variant_quality",
            description="Text recognised (PP-OCRv4) in protected regions of baseline frames is read identically in "
            "every variant (mean character error rate <= 0.02).",
        ),
    ],
    automation_condition=AutomationCondition.eager(),
    kinds={"python", "parquet"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def variant_quality(context: AssetExecutionContext, platform: PlatformResource, config: VariantQualitySettings):
    """Temporal consistency, fidelity outside the editable region, LPIPS, and the manipulation check."""
    video_id = context.partition_key
    layout = platform.layout
    out_dir = layout.artifact_dir("variant_quality", video_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A verdict stands only for the render it checked: drop the old one before checking again,
    # so a failed check leaves the variants "unchecked", never eligible by an earlier verdict.
    (out_dir / ELIGIBILITY_FILE).unlink(missing_ok=True)
    reason = _skip_reason(layout, video_id)
    if reason:
        for name in ("quality.parquet", "manipulation.parquet", SCORERS_FILE, "stimulus.parquet", "stimulus_card.html"):
            (out_dir / name).unlink(missing_ok=True)
        yield _skipped(reason)
        for check in ("manipulation_passed", "perceptual_budget", "protected_unchanged", "information_preserved"):
            yield AssetCheckResult(check_name=check, passed=True, metadata={"skipped": reason})
        return
    from align_core.diffusion import LPIPS
    import torch

    catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
    plans = load_variant_plans(layout.artifact_dir("variant_plans", video_id) / PLANS_FILE)
    control = load_control_tensors(layout.artifact_dir("control_tensors", video_id) / CONTROL_FILE)
    variant_paths = {name: layout.artifact_dir("variant_videos", video_id) / f"{name}.mp4" for name in plans.plans}
    lpips = LPIPS(alexnet_weights(platform))

    def lpips_fn(a: np.ndarray, b: np.ndarray) -> float:
        to = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
        with torch.no_grad():
            return float(lpips(to(a), to(b)).item())

    quality = evaluate_variants(
        catalog.probe.path, variant_paths, plans, control.masks,
        lpips_fn=lpips_fn, lpips_backbone_state=lpips.backbone_state, lpips_every=config.lpips_every,
    )
    attention_fn = _attention_fn(platform, config)
    thresholds = CheckThresholds(min_share=config.min_share, tolerance=config.tolerance)
    verification = VerificationSettings(min_ssim=config.min_ssim, max_delta_e=config.max_delta_e)
    independent = {name: SaliencyModelScorer(name) for name in config.independent_scorers}
    manifest_path = layout.artifact_dir("variant_videos", video_id) / "manifest.json"
    limits = edit_limits_from_manifest(json.loads(manifest_path.read_text())) if manifest_path.exists() else None
    protect = load_protected_regions(layout.artifact_dir("protected_regions", video_id))
    report = verify_variants(
        plans, catalog.probe.path, variant_paths, control.masks, attention_fn, independent, thresholds, verification,
        every=config.measure_every, limits=limits, protect=protect,
    )
    table = report.table
    stimulus = check_stimuli(
        video_id, catalog.probe.path, variant_paths, plans.baseline_name(), protect,
        TextReader(threads=1) if protect.text_keyframes() else None,
        StimulusThresholds(min_psnr_db=config.min_protected_psnr_db, max_cer=config.max_cer, ocr_frames=config.ocr_frames),
        protect.text_keyframes(),
    )
    rendered = pd.read_parquet(layout.artifact_dir("variant_videos", video_id) / "variants.parquet")
    eligibility = eligibility_table(video_id, report.verdicts, dict(zip(rendered["variant"], rendered["sha256"])))
    for frame, name in (
        (quality, "quality.parquet"), (table, "manipulation.parquet"), (report.scorer_table, SCORERS_FILE),
        (eligibility, ELIGIBILITY_FILE),
    ):
        with atomic_path(out_dir / name) as tmp:
            frame.to_parquet(tmp, index=False)
    stimulus_table = stimulus.table()
    with atomic_path(out_dir / "stimulus.parquet") as tmp:
        stimulus_table.to_parquet(tmp, index=False)
    with atomic_path(out_dir / "stimulus_ocr.parquet") as tmp:
        stimulus.ocr.to_parquet(tmp, index=False)
    budget_columns = ["variant", "frames", "min_ssim", "max_delta_e", "mean_delta_e", "frames_over_budget", "budget_passed", "placebo_magnitude_ratio"]
    card = stimulus_card_html(
        video_id, stimulus, report.scorer_table.rename(columns={"agrees": "passed"}), scorer_name=report.attention_fn_name,
        budget=report.budget[budget_columns] if len(report.budget) else None,
        contact_sheet=layout.artifact_dir("variant_videos", video_id) / "contact_sheet.png",
        notes={"faces": protect.summary()["faces"]},
    )
    atomic_write_text(out_dir / "stimulus_card.html", card)
    verdicts = report.verdicts
    failed = verdicts[~verdicts["passed"]]
    budget = report.budget.drop(columns=["video_id"])
    per_scorer = report.scorer_table.pivot_table(index=["variant", "window"], columns="scorer", values="achieved_delta", sort=False)
    per_scorer = per_scorer.rename(columns={report.attention_fn_name: "calibrating"})
    only_unmanipulable = not failed.empty and (failed["status"] == "not_manipulable").all()
    yield MaterializeResult(
        metadata={
            "skipped": False,
            "stimulus_card": MetadataValue.md(card),
            "stimulus_card_html": MetadataValue.path(str(out_dir / "stimulus_card.html")),
            "protected_fidelity": table_markdown(stimulus.fidelity.drop(columns=["video_id"]), floatfmt=".1f"),
            "information_check": table_markdown(stimulus.information.drop(columns=["video_id"])),
            "quality": table_markdown(quality.drop(columns=["video_id"]), floatfmt=".3f"),
            "manipulation_check": table_markdown(table.drop(columns=["video_id"]), max_rows=40),
            "target_vs_achieved": png_markdown(_target_vs_achieved_plot(out_dir, table), alt="target vs achieved change"),
            "verdicts": table_markdown(verdicts),
            "achieved_change_by_scorer": table_markdown(per_scorer.reset_index(), max_rows=40, floatfmt=".4f"),
            "perceptual_budget": table_markdown(budget, floatfmt=".3f"),
            "scorer_cards": table_markdown(_cards_table(), floatfmt=".3f"),
            "lpips_backbone_state": lpips.backbone_state,
            "measured_with": report.attention_fn_name,
            "independent_scorers": MetadataValue.json({name: fn.scorer_id for name, fn in independent.items()}),
        }
    )
    yield AssetCheckResult(
        check_name="manipulation_passed",
        passed=bool(report.passed),
        # A variant that cannot differ from baseline is excluded, not a broken editor: warn.
        severity=AssetCheckSeverity.WARN if only_unmanipulable else AssetCheckSeverity.ERROR,
        metadata={
            "failed_variants": MetadataValue.json(failed.to_dict(orient="records")),
            "excluded_from_experiments": MetadataValue.json(
                eligibility[~eligibility["eligible"]][["variant", "exclusion_reason"]].to_dict(orient="records")
            ),
            "thresholds": MetadataValue.json(vars(thresholds)),
            "measured_with": report.attention_fn_name,
            "statuses": MetadataValue.json(dict(zip(verdicts["variant"], verdicts["status"]))),
        },
    )
    over = report.budget[~report.budget["budget_passed"]]
    placebo = report.budget[report.budget["kind"] == "placebo"]
    low, high = verification.placebo_magnitude_range
    matched = placebo["placebo_magnitude_ratio"].between(low, high).all()
    yield AssetCheckResult(
        check_name="perceptual_budget",
        passed=bool(over.empty and matched),
        metadata={
            "budget": MetadataValue.json({"min_ssim": config.min_ssim, "max_delta_e": config.max_delta_e}),
            "worst_min_ssim": MetadataValue.float(float(report.budget["min_ssim"].min()) if len(report.budget) else 1.0),
            "worst_max_delta_e": MetadataValue.float(float(report.budget["max_delta_e"].max()) if len(report.budget) else 0.0),
            "variants_over_budget": MetadataValue.json(over["variant"].tolist()),
            "placebo_magnitude_ratio": MetadataValue.json(
                [round(float(x), 3) if np.isfinite(x) else None for x in placebo["placebo_magnitude_ratio"]]
            ),
        },
    )

    yield AssetCheckResult(
        check_name="protected_unchanged",
        passed=stimulus.fidelity_passed,
        metadata={
            "per_variant": table_markdown(stimulus.fidelity.drop(columns=["video_id"]), floatfmt=".1f"),
            "thresholds": MetadataValue.json(vars(stimulus.thresholds)),
        },
    )
    yield AssetCheckResult(
        check_name="information_preserved",
        passed=stimulus.information_passed,
        metadata={
            "per_variant": table_markdown(stimulus.information.drop(columns=["video_id"])),
            "faces": MetadataValue.text(protect.summary()["faces"]),
        },
    )


def _cards_table() -> pd.DataFrame:
    """The scorers' validation cards (NUS Scene 151-300) as one table."""
    cards = scorer_cards()
    rows = [
        {"scorer": name, "NSS": card["content_only"]["NSS"], "CC": card["content_only"]["CC"],
         "NSS_with_centre": card["with_centre_prior"]["NSS"], "CC_with_centre": card["with_centre_prior"]["CC"],
         "centre_weight": card["centre_weight"], "used_as": card["used_as"]}
        for name, card in cards.get("scorers", {}).items()
    ]
    return pd.DataFrame(rows)


def _target_vs_achieved_plot(out_dir, table: pd.DataFrame):
    """Planned vs achieved alignment change per variant and window (points on the diagonal hit the target)."""
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
    path = out_dir / "target_vs_achieved.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


variants_table = collect_table_asset(
    name="variants",
    source_asset="variant_videos",
    file_name="variants.parquet",
    eligibility=("variant_quality", ELIGIBILITY_FILE),
    description="One row per edited variant video with its lineage (editor, checkpoint, seed, hashes) and whether "
    "it may enter an experiment (eligible, exclusion_reason: only variants that passed their checks).",
    group_name="warehouse",
    order_by="video_id, variant",
)

variant_quality_table = collect_table_asset(
    name="variant_quality_table",
    table="variant_quality",
    source_asset="variant_quality",
    file_name="quality.parquet",
    description="Per variant: warping error vs the original's, PSNR/SSIM by region, LPIPS (with its backbone state).",
    group_name="warehouse",
    order_by="video_id, variant",
)

stimulus_check = collect_table_asset(
    name="stimulus_check",
    source_asset="variant_quality",
    file_name="stimulus.parquet",
    description="Per variant: PSNR vs baseline inside protected regions (and the codec's own), OCR character error rate.",
    group_name="warehouse",
    order_by="video_id, variant",
)

manipulation_check = collect_table_asset(
    name="manipulation_check",
    source_asset="variant_quality",
    file_name="manipulation.parquet",
    description="Per variant and window: planned vs achieved alignment change under the calibrating scorer, the "
    "independent scorers' vote, the perceptual budget figures, the status and the verdict.",
    group_name="warehouse",
    order_by="video_id, variant",
)

manipulation_by_scorer = collect_table_asset(
    name="manipulation_by_scorer",
    source_asset="variant_quality",
    file_name=SCORERS_FILE,
    description="Per variant, window and scorer (calibrating and independent): planned vs achieved change and agreement.",
    group_name="warehouse",
    order_by="video_id, variant, scorer",
)
