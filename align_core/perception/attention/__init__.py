"""Attention maps A_t in [0, 1] by the meaning-map procedure with pluggable patch scorers.

See :mod:`align_core.perception.attention.maps` for the procedure and the video driver,
:mod:`align_core.perception.attention.geometry` for degrees-to-pixels, :mod:`align_core.perception.attention.scorers`
for the weight-free scorers and the registry, :mod:`align_core.perception.attention.llava` for the
LLaVA-family scorer (imported lazily: it needs torch and transformers).
"""

from align_core.perception.attention.base import PatchScorer, disk_means_at, spectral_residual, splat_patch_scores
from align_core.perception.attention.geometry import ViewingGeometry, disk_kernel, patch_grid
from align_core.perception.attention.maps import (
    AttentionConfig,
    AttentionMaps,
    analysis_map,
    attention_map,
    compute_attention_maps,
    keyframes_for_scenes,
    load_attention_maps,
    postprocess_map,
    raw_meaning_map,
    save_attention_maps,
    working_size,
)
from align_core.perception.attention.scorers import (
    SCORERS,
    FeatureRichnessScorer,
    FeatureWeights,
    ProvidedMapScorer,
    SpectralResidualScorer,
    feature_maps,
    make_patch_scorer,
)

__all__ = [
    "SCORERS",
    "AttentionConfig",
    "AttentionMaps",
    "FeatureRichnessScorer",
    "FeatureWeights",
    "PatchScorer",
    "ProvidedMapScorer",
    "SpectralResidualScorer",
    "ViewingGeometry",
    "analysis_map",
    "attention_map",
    "compute_attention_maps",
    "disk_kernel",
    "disk_means_at",
    "feature_maps",
    "keyframes_for_scenes",
    "load_attention_maps",
    "make_patch_scorer",
    "patch_grid",
    "postprocess_map",
    "raw_meaning_map",
    "save_attention_maps",
    "spectral_residual",
    "splat_patch_scores",
    "working_size",
]
