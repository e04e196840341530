"""Measuring the stimuli: temporal consistency and fidelity, the perceptual budget, the
manipulation check, the stimulus checks, the saliency metrics the scorers are validated with, and the
image metrics (SSIM, PSNR, centre prior) they share.

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "frame_sampling": (
            "FrameSample",
            "analysis_factor",
            "downscale",
            "downscale_mask",
            "full_blocks",
            "sample_frames",
            "segments",
            "stride_for",
        ),
        "image_metrics": (
            "SsimReference",
            "bt601_luma",
            "centre_prior",
            "centre_prior_at",
            "psnr_from_squared_error",
        ),
        "manipulation": (
            "AttentionFn",
            "CalibrationPoint",
            "CheckThresholds",
            "ManipulationReport",
            "NOT_DECIDING",
            "VerificationSettings",
            "alignment",
            "calibrate_strength_map",
            "check_rendered_variants",
            "deciding_rows",
            "manipulation_check",
            "measure_alignment",
            "measure_rendered",
            "scaled_alignment",
            "scorer_agrees",
            "verify_variants",
        ),
        "perceptual_budget": (
            "DEFAULT_MAX_DELTA_E",
            "DEFAULT_MIN_SSIM",
            "BudgetMeasure",
            "BudgetReference",
            "PerceptualBudget",
            "ciede2000",
            "downsample_factor",
            "measure",
        ),
        "quality": (
            "QualityPass",
            "evaluate_variants",
            "psnr",
            "sequence_warping_error",
            "ssim",
        ),
        "saliency_metrics": (
            "auc_judd",
            "blur_fixations",
            "cc",
            "centre_bias_map",
            "fixation_map_from_points",
            "kld",
            "load_nus_image",
            "nss",
            "sim",
        ),
        "stimulus_checks": (
            "StimulusPass",
            "StimulusThresholds",
            "UNSTABLE",
            "character_error_rate",
            "check_stimuli",
            "is_stable",
            "stability_window",
            "stimulus_card_html",
        ),
    },
)
