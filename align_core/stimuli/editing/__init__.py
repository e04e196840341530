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
        "keyframe_edits": (
            "DeferredArray",
            "FrameInputs",
            "KeyframeEdits",
            "RequestKey",
        ),
        "manifest": (
            "edit_limits",
            "render_manifest",
        ),
        "pipeline": (
            "calibrate_and_render",
            "calibrate_for_video",
            "calibrate_render_check",
            "edit_limits_from_manifest",
        ),
        "preview": (
            "COMPARISON_COLUMNS",
            "RenderPreview",
            "captioned",
            "even_size",
            "label_image",
            "tile_grid",
        ),
        "propagation": (
            "FlowPropagator",
            "Segment",
            "iter_segments",
            "keyframe_indices",
            "propagate_edits",
            "propagate_segment",
        ),
        "regions": (
            "allowed_region",
            "bounding_box",
            "dilate_ellipse",
            "guarded_protect",
            "restore",
        ),
        "render": ("render_variants",),
        "render_request": (
            "VARIANT_CRF",
            "RenderRequest",
            "StrengthMap",
            "auto_encoder_preset",
            "propagation_ranges",
        ),
        "renderer": (
            "EveryFrameRenderer",
            "PropagatedRenderer",
            "RenderResult",
            "VariantRenderer",
        ),
        "salience": (
            "SalienceEditor",
            "fast_gaussian_blur",
        ),
    },
)
