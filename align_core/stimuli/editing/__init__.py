"""Editing: turn a variant plan into edited frames (keyframe editors + temporal propagation).

Names are imported from their module on first use (:mod:`align_core.lazy`).
"""

from align_core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "base": (
            "EDITORS",
            "EditReport",
            "KeyframeEditRequest",
            "KeyframeEditor",
            "UnreportedEdit",
            "edit_with_report",
        ),
        "controlnet_editor": ("ControlNetEditor",),
        "pipeline": (
            "calibrate_and_render",
            "calibrate_for_video",
            "calibrate_render_check",
            "edit_limits_from_manifest",
        ),
        "propagation": (
            "FlowPropagator",
            "iter_segments",
            "keyframe_indices",
            "propagate_edits",
            "propagate_segment",
        ),
        "regions": (
            "bounding_box",
            "dilate_ellipse",
            "restore",
        ),
        "render": (
            "DeferredArray",
            "RenderResult",
            "StrengthMap",
            "allowed_region",
            "auto_encoder_preset",
            "edit_limits",
            "guarded_protect",
            "render_variants",
        ),
        "salience": (
            "SalienceEditor",
            "fast_gaussian_blur",
        ),
    },
)
