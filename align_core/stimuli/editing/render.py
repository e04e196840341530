"""Render every variant of one video: keyframe edits, flow propagation, H.264 with the source's audio.

Keyframes are the first frame of every scene, the first frame of every timing window inside a
scene (where a timing variant's edit switches), and every ``stride``-th frame after those; flow
propagation never crosses a cut or a window boundary. An editor that is a cheap deterministic
function of (frame, mask, strength) (``propagation = "every_frame"``, the salience editor) has EVERY
frame edited with its own mask instead: flow-propagated blur/sharpen residuals misregister by a
pixel and lose most of their effect (on the demo, a reduction's propagated frames kept about a
third of the keyframe's change in the product's texture and 8% of the planned alignment change).
One pass over the source: frames are decoded once and streamed in keyframe segments (at most
``stride + 1`` frames held), flow is computed once per segment and shared by all variants, and a
keyframe edit is computed once per distinct request (early_boost and full_boost ask for the same
edit on an early keyframe; every out-of-window keyframe is the baseline's identity edit), so
variants that share work do not redo it. Outputs, written into a temporary directory swapped in
whole (``atomic_directory``):

- ``<variant>.mp4``: H.264 at the source's resolution and exact frame rate, source audio kept;
- ``comparison.mp4``: the original and all variants tiled in a labelled grid (4 columns; tiles at
  half size, at most ``comparison_max_side`` px long), audio kept;
- ``contact_sheet.png``: a few frames per variant (rows) with labels;
- ``manifest.json``: lineage (input hashes, config, seed, editor and flow lineage, keyframes,
  share of frames edited at a keyframe, per-variant output hashes and edit magnitudes).

Allowed regions (the pixels a variant may change; the rest is copied from the original): boosts
and reductions may change the whole frame, since they work by muting or enriching the
background AND adjusting the product; the baseline goes through the identity path over the whole
frame; the placebo may change only pixels outside the product mask dilated by
``placebo_margin`` (a fraction of the frame's shorter side). Protected pixels (``protect``: text
overlays, faces, user regions; :mod:`align_core.perception.protect`) are outside every variant's allowed
region, and after editing and propagation the renderer copies them from the source frame
(``out[protect] = source[protect]``), so no variant, whatever its editor, changes them. The
copied region is ``protect`` dilated by ``protect_guard_px`` (8 px): yuv420p shares chroma over
2x2 pixels and H.264 quantises 4x4/8x8 blocks, so an edit right next to a protected pixel
otherwise bleeds into it after encoding (measured on an outlined caption beside a fully
desaturated or saturated background: 34-36 dB inside the box against baseline without a guard;
with 8 px, no worse than the codec's own noise there). The
contact sheet and the comparison video outline the product (green) and protected regions
(magenta).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from align_core.io.video_io import VideoWriter
from align_core.stimuli.editing.base import KeyframeEditor
from align_core.stimuli.editing.propagation import FlowPropagator
from align_core.stimuli.editing.render_request import RenderRequest, StrengthMap
from align_core.stimuli.editing.renderer import RenderResult, VariantRenderer
from align_core.stimuli.plans import VariantPlans

# The renderer's pieces live in their own modules (render_request, keyframe_edits, renderer,
# preview, manifest, regions); this module is the one entry point.
__all__ = ["render_variants"]


def render_variants(
    video_path: str | os.PathLike[str],
    plans: VariantPlans,
    masks: np.ndarray,
    attention: np.ndarray,
    editor: KeyframeEditor,
    output_dir: str | os.PathLike[str],
    keyframe_stride: int = 8,
    seed: int = 0,
    strength_map: StrengthMap | None = None,
    placebo_margin: float = 0.02,
    propagator: FlowPropagator | None = None,
    contact_frames: int = 5,
    comparison_scale: float = 0.5,
    comparison_max_side: int = 480,
    extra_lineage: Mapping[str, Any] | None = None,
    edit_every_frame: bool | None = None,
    protect: Any = None,
    protect_guard_px: int = 8,
    encoder_preset: str = "auto",
) -> RenderResult:
    """Edit, propagate and write every planned variant of ``video_path`` into ``output_dir``.

    ``masks`` is bool ``(T, H, W)`` and ``attention`` float32 ``(T, H, W)`` (anything indexable by
    frame, e.g. a memmap). The source is decoded once; see the module docstring for outputs.
    ``protect`` (optional) is indexable by frame giving bool ``(H, W)``, True = never edit (a
    :class:`~align_core.perception.protect.ProtectedRegions` or a ``(T, H, W)`` array); the copied region is
    dilated by ``protect_guard_px`` (see the module docstring).
    ``encoder_preset``: the x264 preset of every output (CRF :data:`VARIANT_CRF` for the variants); ``auto`` picks
    :func:`auto_encoder_preset` for the frame size.
    ``edit_every_frame`` (default: the editor's ``propagation`` is ``every_frame``)
    edits every frame with its own mask instead of propagating keyframe edits by flow.
    """
    started = time.perf_counter()
    request = RenderRequest.resolve(
        video_path,
        plans,
        masks,
        attention,
        editor,
        output_dir,
        keyframe_stride=keyframe_stride,
        strength_map=strength_map,
        placebo_margin=placebo_margin,
        propagator=propagator,
        edit_every_frame=edit_every_frame,
        encoder_preset=encoder_preset,
        seed=seed,
        protect=protect,
        protect_guard_px=protect_guard_px,
        contact_frames=contact_frames,
        comparison_scale=comparison_scale,
        comparison_max_side=comparison_max_side,
        extra_lineage=extra_lineage,
    )
    # VideoWriter is looked up here, at call time, so a test can record what is written.
    return VariantRenderer.for_request(request, VideoWriter).render(started)
