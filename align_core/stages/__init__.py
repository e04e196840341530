"""Stage runners: what one materialization of each asset does, as plain functions.

Each stage is one function taking a :class:`~align_core.io.layout.DataLayout` (and the video id,
the chosen components and the stage's settings) and returning a result object with the paths
it wrote. The Dagster assets call exactly these functions and turn the results into metadata;
``bench/run_all.py`` and notebooks call the same functions, so there is one copy of each stage.

=====================  ============================================================
module                 stages
=====================  ============================================================
``catalog``            :func:`run_catalog` (+ :func:`catalog_checks`)
``attention``          :func:`run_attention`, :class:`AttentionMeasure`
``masks``              :func:`run_masks`
``protect``            :func:`run_protect`
``control``            :func:`run_control` (+ :func:`control_checks`)
``checkpoint``         :func:`run_checkpoint`, :func:`training_samples`
``variants``           :func:`run_plans`, :func:`run_variant_videos`, :func:`run_variant_quality`
=====================  ============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckOutcome"]


@dataclass(frozen=True)
class CheckOutcome:
    """One data check's verdict, independent of Dagster (the assets turn it into an asset check)."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    #: a failure is a warning, not an error (the data is usable but suspicious)
    warn_only: bool = False
