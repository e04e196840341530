"""Per-video ``variant_plans``, ``variant_videos`` and ``variant_quality`` (with the manipulation check).

The work is ``align_core.stages.variants``; a skipped video (screened keyword, product never
visible) still materializes, with ``skipped`` and the reason in its metadata, so backfills
finish and the UI says why nothing was edited. ``variant_videos`` is built by
:func:`variant_videos_asset` because its upstream depends on the configured editor: only an
editor that reads the trained checkpoint makes it depend on ``controlnet_checkpoint``.
"""

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from align_assets.assets.checkpoint import GPU_OP_TAGS
from align_assets.metadata import png_markdown, table_markdown
from align_assets.partitions import CHEAP_BACKFILL, ONE_VIDEO_PER_RUN, materialize_each_video, video_partitions
from align_assets.resources import EditorResource, PlatformResource, ScorerResource
from align_assets.warehouse_tables import collect_table_asset
from align_core.stages.variants import (
    VariantPlanSettings,
    VariantQualitySettings,
    VariantVideoSettings,
    run_plans,
    run_variant_quality,
    run_variant_videos,
)


class VariantPlanConfig(Config, VariantPlanSettings):
    """The variant registry for this run (default: ``align_core.stimuli.plans.DEFAULT_VARIANTS``)."""


class VariantVideoConfig(Config, VariantVideoSettings):
    """How variants are rendered; the editor is the ``editor`` resource."""


class VariantQualityConfig(Config, VariantQualitySettings):
    """Check thresholds and sampling; the measuring scorer is the ``scorer`` resource."""


def _skipped_metadata(reason: str) -> dict:
    return {"skipped": True, "reason": MetadataValue.text(reason)}


@asset(
    partitions_def=video_partitions,
    deps=["control_tensors", "video_catalog"],
    group_name="variants",
    backfill_policy=CHEAP_BACKFILL,
    kinds={"python", "json"},
)
def variant_plans(
    context: AssetExecutionContext, platform: PlatformResource, config: VariantPlanConfig
) -> MaterializeResult:
    """Seven (configurable) target alignment curves per frame and scene, by the centre-time thirds rule."""

    def one(video_id: str) -> dict:
        result = run_plans(platform.layout, video_id, config)
        if result.skipped_reason:
            return _skipped_metadata(result.skipped_reason)
        return {
            "skipped": False,
            "variants": MetadataValue.json([spec.to_dict() for spec in result.specs]),
            "not_rendered": MetadataValue.json(result.plans.not_rendered if result.plans else {}),
            "targets": png_markdown(result.paths["targets"], alt="target curves"),
            "scene_targets": table_markdown(result.scenes, max_rows=40),
            "plan": MetadataValue.path(str(result.paths["plans"])),
        }

    return materialize_each_video(context, one)


def variant_videos_asset(needs_checkpoint: bool):
    """The ``variant_videos`` asset; ``needs_checkpoint``: the configured editor reads the ControlNet checkpoint."""
    deps = ["variant_plans", "keyword_masks", "attention_maps", "protected_regions"] + (
        ["controlnet_checkpoint"] if needs_checkpoint else []
    )

    @asset(
        name="variant_videos",
        partitions_def=video_partitions,
        deps=deps,
        group_name="variants",
        # only a diffusion editor needs the GPU: the salience editor's renders run side by side
        pool="gpu" if needs_checkpoint else None,
        op_tags=GPU_OP_TAGS if needs_checkpoint else {},
        kinds={"python", "video"},
        backfill_policy=ONE_VIDEO_PER_RUN,
    )
    def variant_videos(
        context: AssetExecutionContext,
        platform: PlatformResource,
        editor: EditorResource,
        scorer: ScorerResource,
        config: VariantVideoConfig,
    ) -> MaterializeResult:
        """Seven H.264 variants with the source's audio, a side-by-side video, a contact sheet, a manifest.

        Keyframes are edited (salience operations or ControlNet img2img) and carried to the other
        frames by DIS optical flow within each scene; pixels a variant may not change are copied,
        protected regions (text overlays, user regions) from the source in every variant. An editor that calibrates is calibrated against the ``scorer`` resource's measure.
        """
        result = run_variant_videos(
            platform.layout,
            context.partition_key,
            editor.choice(platform),
            scorer.measure(platform),
            config,
            device=platform.defaults.device,
        )
        if result.skipped_reason:
            return MaterializeResult(metadata=_skipped_metadata(result.skipped_reason))
        render, checkpoint = result.outcome.render, result.checkpoint
        if result.protect is None:
            context.log.warning(
                f"video {context.partition_key}: protect=False: text overlays and user regions may be edited in every variant"
            )
        return MaterializeResult(
            metadata={
                "skipped": False,
                "contact_sheet": png_markdown(render.contact_sheet_path, alt="contact sheet", max_width=900),
                "comparison_video": MetadataValue.path(str(render.comparison_path)),
                "variant_videos": MetadataValue.json({name: str(path) for name, path in render.variant_paths.items()}),
                "editor": result.editor_name,
                "editor_lineage": MetadataValue.json(result.editor_lineage),
                "keyframe_share": MetadataValue.float(round(render.keyframe_share, 3)),
                "propagation": MetadataValue.text(render.manifest["config"]["keyframe_placement"]),
                "calibration": MetadataValue.json([vars(point) for point in result.outcome.calibration]),
                "variant_frames_per_second": round(result.frames_edited / result.seconds, 1),
                "timings_s": MetadataValue.json({k: round(v, 2) for k, v in render.timings.items()}),
                "manifest": MetadataValue.path(str(render.manifest_path)),
                "checkpoint_sha256": checkpoint["weights_sha256"] if checkpoint else "none",
                "protect": result.protect is not None,
                **(
                    {
                        "protected_share": MetadataValue.float(round(render.manifest["protect"]["protected_share"], 4)),
                        "faces": MetadataValue.text(result.protect.summary()["faces"]),
                    }
                    if result.protect is not None
                    else {}
                ),
            }
        )

    return variant_videos


@asset(
    partitions_def=video_partitions,
    deps=["variant_videos", "protected_regions"],
    group_name="variants",
    check_specs=[
        AssetCheckSpec(
            "manipulation_passed",
            asset="variant_quality",
            description="Each variant moved the product's share of attention as planned (sign and share) under the "
            "calibrating scorer (the attention maps' own) AND a majority of independent scorers; baseline and placebo "
            "within tolerance.",
        ),
        AssetCheckSpec(
            "perceptual_budget",
            asset="variant_quality",
            description="Every measured frame of every variant (every frame of a demo-size ad; a stated sample of "
            "each scene-window segment of a long real-size ad) keeps SSIM and mean CIEDE2000 vs baseline outside "
            "product and protected regions within the budget; the placebo matches the matched boost's magnitude.",
        ),
        AssetCheckSpec(
            "protected_unchanged",
            asset="variant_quality",
            description="Inside protected regions every variant equals baseline up to codec noise: PSNR vs baseline "
            ">= min(40 dB, the codec's own PSNR there) - 3 dB, pooled and per frame.",
        ),
        AssetCheckSpec(
            "information_preserved",
            asset="variant_quality",
            description="Text recognised (PP-OCRv4) in protected regions of baseline frames, and read identically on "
            "3 consecutive baseline frames, is read identically in every variant (mean character error rate <= 0.02); "
            "text unstable in baseline is listed, not compared. A failing variant is not eligible.",
        ),
    ],
    kinds={"python", "parquet"},
    backfill_policy=ONE_VIDEO_PER_RUN,
)
def variant_quality(
    context: AssetExecutionContext, platform: PlatformResource, scorer: ScorerResource, config: VariantQualityConfig
):
    """Temporal consistency, fidelity outside the editable region, LPIPS, the manipulation check, the budget and the stimulus checks."""
    result = run_variant_quality(platform.layout, context.partition_key, scorer.measure(platform), config)
    if result.skipped_reason:
        yield MaterializeResult(metadata=_skipped_metadata(result.skipped_reason))
        for check in ("manipulation_passed", "perceptual_budget", "protected_unchanged", "information_preserved"):
            yield AssetCheckResult(check_name=check, passed=True, metadata={"skipped": result.skipped_reason})
        return
    yield MaterializeResult(metadata=_quality_metadata(result))
    yield _manipulation_check(result)
    yield _budget_check(result)
    yield from _stimulus_checks(result.stimulus, faces=result.faces)


def _quality_metadata(result) -> dict:
    """The materialization's metadata: the stimulus card, the quality and manipulation tables, the scorers."""
    stimulus, report, budget = result.stimulus, result.report, result.report.budget
    per_scorer = report.scorer_table.pivot_table(
        index=["variant", "window"], columns="scorer", values="achieved_delta", sort=False
    )
    per_scorer = per_scorer.rename(columns={report.attention_fn_name: "calibrating"})
    return {
        "skipped": False,
        "stimulus_card": MetadataValue.md(result.stimulus_card),
        "stimulus_card_html": MetadataValue.path(str(result.paths["stimulus_card"])),
        "protected_fidelity": table_markdown(stimulus.fidelity.drop(columns=["video_id"]), floatfmt=".1f"),
        "information_check": table_markdown(stimulus.information.drop(columns=["video_id"])),
        "quality": table_markdown(result.quality.drop(columns=["video_id"]), floatfmt=".3f"),
        "manipulation_check": table_markdown(report.table.drop(columns=["video_id"]), max_rows=40),
        "target_vs_achieved": png_markdown(result.paths["plot"], alt="target vs achieved change"),
        "verdicts": table_markdown(report.verdicts),
        "achieved_change_by_scorer": table_markdown(per_scorer.reset_index(), max_rows=40, floatfmt=".4f"),
        "perceptual_budget": table_markdown(budget.drop(columns=["video_id"]), floatfmt=".3f")
        if len(budget)
        else "none",
        "scorer_cards": table_markdown(_cards_table(), floatfmt=".3f"),
        "video_scorer_cards": table_markdown(_video_cards_table(), floatfmt=".3f"),
        "lpips_backbone_state": result.lpips_backbone_state,
        "measured_with": report.attention_fn_name,
        "independent_scorers": MetadataValue.json(result.independent_ids),
    }


def _manipulation_check(result) -> AssetCheckResult:
    report, eligibility = result.report, result.eligibility
    verdicts = report.verdicts
    failed = verdicts[~verdicts["passed"]]
    only_unmanipulable = not failed.empty and (failed["status"] == "not_manipulable").all()
    return AssetCheckResult(
        check_name="manipulation_passed",
        passed=bool(report.passed),
        # A variant that cannot differ from baseline is excluded, not a broken editor: warn.
        severity=AssetCheckSeverity.WARN if only_unmanipulable else AssetCheckSeverity.ERROR,
        metadata={
            "failed_variants": MetadataValue.json(failed.to_dict(orient="records")),
            "excluded_from_experiments": MetadataValue.json(
                eligibility[~eligibility["eligible"]][["variant", "exclusion_reason"]].to_dict(orient="records")
            ),
            "thresholds": MetadataValue.json(vars(result.thresholds)),
            "measured_with": report.attention_fn_name,
            "statuses": MetadataValue.json(dict(zip(verdicts["variant"], verdicts["status"], strict=False))),
        },
    )


def _budget_check(result) -> AssetCheckResult:
    """Every variant within the perceptual budget, and each placebo matched to its boost's magnitude."""
    budget, verification = result.report.budget, result.verification
    over = budget[~budget["budget_passed"]] if len(budget) else budget
    placebo = budget[budget["kind"] == "placebo"] if len(budget) else budget
    low, high = verification.placebo_magnitude_range
    matched = bool(placebo["placebo_magnitude_ratio"].between(low, high).all()) if len(placebo) else True
    return AssetCheckResult(
        check_name="perceptual_budget",
        passed=bool(over.empty and matched),
        metadata={
            "budget": MetadataValue.json(verification.budget.to_dict()),
            "worst_min_ssim": MetadataValue.float(float(budget["min_ssim"].min()) if len(budget) else 1.0),
            "worst_max_delta_e": MetadataValue.float(float(budget["max_delta_e"].max()) if len(budget) else 0.0),
            "variants_over_budget": MetadataValue.json(over["variant"].tolist() if len(over) else []),
            "placebo_magnitude_ratio": MetadataValue.json(
                [round(float(x), 3) if np.isfinite(x) else None for x in placebo["placebo_magnitude_ratio"]]
                if len(placebo)
                else []
            ),
        },
    )


def _stimulus_checks(stimulus, faces: str) -> tuple[AssetCheckResult, AssetCheckResult]:
    """``protected_unchanged`` and ``information_preserved``: the stimulus checks inside protected regions."""
    protected = AssetCheckResult(
        check_name="protected_unchanged",
        passed=stimulus.fidelity_passed,
        metadata={
            "per_variant": table_markdown(stimulus.fidelity.drop(columns=["video_id"]), floatfmt=".1f"),
            "thresholds": MetadataValue.json(vars(stimulus.thresholds)),
        },
    )
    information = AssetCheckResult(
        check_name="information_preserved",
        passed=stimulus.information_passed,
        metadata={
            "per_variant": table_markdown(stimulus.information.drop(columns=["video_id"])),
            "faces": MetadataValue.text(faces),
        },
    )
    return protected, information


def _cards_table() -> pd.DataFrame:
    """The scorers' validation cards (NUS Scene 151-300) as one table."""
    from align_core.perception.attention.independent import scorer_cards

    cards = scorer_cards()
    rows = [
        {
            "scorer": name,
            "NSS": card["content_only"]["NSS"],
            "CC": card["content_only"]["CC"],
            "NSS_with_centre": card["with_centre_prior"]["NSS"],
            "CC_with_centre": card["with_centre_prior"]["CC"],
            "centre_weight": card["centre_weight"],
            "used_as": card["used_as"],
        }
        for name, card in cards.get("scorers", {}).items()
    ]
    return pd.DataFrame(rows)


def _video_cards_table() -> pd.DataFrame:
    """The video cards (UCF diving held-back frames, NUS Scene 151-300) as one table."""
    from align_core.perception.attention.independent import scorer_cards

    video = scorer_cards().get("video") or {}
    ucf = (video.get("ucf_sports_diving") or {}).get("rows", {})
    nus = (video.get("nus_scene") or {}).get("rows", {})
    rows = []
    for name, row in ucf.items():
        still = nus.get(name) or {}
        rows.append(
            {
                "row": name,
                "UCF_NSS": row["NSS"],
                "UCF_CC": row["CC"],
                "NUS_NSS": still.get("NSS"),
                "NUS_CC": still.get("CC"),
            }
        )
    return pd.DataFrame(rows)


variants_table = collect_table_asset(
    name="variants",
    source_asset="variant_videos",
    file_role="rows",
    eligibility=("variant_quality", "eligibility"),
    description="One row per edited variant video with its lineage (editor, checkpoint, seed, hashes) and whether "
    "it may enter an experiment (eligible, exclusion_reason: only variants that passed their checks).",
    group_name="warehouse",
    order_by="video_id, variant",
)

variant_quality_table = collect_table_asset(
    name="variant_quality_table",
    table="variant_quality",
    source_asset="variant_quality",
    file_role="quality",
    description="Per variant: warping error vs the original's, PSNR/SSIM by region, LPIPS (with its backbone state).",
    group_name="warehouse",
    order_by="video_id, variant",
)

stimulus_check = collect_table_asset(
    name="stimulus_check",
    source_asset="variant_quality",
    file_role="stimulus",
    description="Per variant: PSNR vs baseline inside protected regions (and the codec's own), OCR character error rate.",
    group_name="warehouse",
    order_by="video_id, variant",
)

manipulation_check = collect_table_asset(
    name="manipulation_check",
    source_asset="variant_quality",
    file_role="manipulation",
    description="Per variant and window: planned vs achieved alignment change under the calibrating scorer, the "
    "independent scorers' vote, the perceptual budget figures, the status and the verdict.",
    group_name="warehouse",
    order_by="video_id, variant",
)

manipulation_by_scorer = collect_table_asset(
    name="manipulation_by_scorer",
    source_asset="variant_quality",
    file_role="scorers",
    description="Per variant, window and scorer (calibrating and independent): planned vs achieved change and agreement.",
    group_name="warehouse",
    order_by="video_id, variant, scorer",
)
