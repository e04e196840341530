"""Statistics over the warehouse's tables (pandas, statsmodels, scipy; no torch, no Dagster):
lift, heterogeneity, meta-analysis, timing, dose-response, guardrails, the analysis plan and the report.

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "arms": (
            "BASELINE",
            "control_arm",
        ),
        "guardrails": (
            "design_effect",
            "mde_relative",
            "planning_table",
            "required_impressions",
            "srm_test",
        ),
        "heterogeneity": (
            "GLM_FORMULAS",
            "NotEstimable",
            "check_glm_identified",
            "fit_interaction_glm",
            "conventional_floor",
            "interaction_wald",
            "industry_lifts",
            "cochran_q",
            "heterogeneity_tables",
        ),
        "lift": (
            "DESIGNS",
            "RatioInfluence",
            "arms_chi_square",
            "lift_table",
            "rate_fit",
            "ratio_influence",
        ),
        "meta": (
            "log_risk_ratio",
            "moderator_regression",
            "p_matrix",
            "pool_industries",
            "random_effects",
        ),
        "observational": ("observational_table",),
        "preregistration": (
            "analysis_plan",
            "deviations_table",
            "plan_deviations",
            "plan_hash",
            "register_plan",
            "verify_plan_file",
        ),
        "queries": ("achieved_deltas",),
        "simulated": (
            "label_simulated",
            "simulated_banner",
            "simulated_experiments",
        ),
        "report": (
            "TABLES",
            "build_report",
            "compute_tables",
        ),
        "small_sample": (
            "ClusterFit",
            "METHOD_CR1",
            "METHOD_CR2",
            "SMALL_SAMPLE_CLUSTERS",
            "cluster_wls",
            "hotelling_test",
        ),
        "timing": (
            "VARIANT_WINDOW",
            "dose_response",
            "select_doses",
            "timing_contrasts",
            "video_variant_log_lifts",
        ),
    },
)
