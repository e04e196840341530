"""The experimental stimuli: variant plans (target alignment curves), the editors that render
them (``stimuli.editing``) and the ControlNet they may use (``stimuli.diffusion``, needs torch).

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "plans": (
            "DEFAULT_VARIANTS",
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
        ),
    },
)
