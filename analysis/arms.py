"""Which arm is the control: read from the variant registry, never typed as a name.

The registry (:mod:`align_core.stimuli.plans`) marks exactly one spec with role "control".
The estimators label the control arm with the default registry's control name
(:data:`BASELINE`); the report relabels an experiment's own control to it, so an experiment
may call its control anything (``control_arm(registry)`` says what).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, control_name

if TYPE_CHECKING:
    from align_core.experiments.config import ExperimentConfig

__all__ = [
    "BASELINE",
    "control_arm",
]


def control_arm(source: ExperimentConfig | Iterable[VariantSpec] = DEFAULT_VARIANTS) -> str:
    """The control arm's name in an experiment config or a variant registry (default: the default registry's)."""
    return control_name(getattr(source, "variants", source))


#: The label the estimators give the control arm (the default registry's control, "baseline").
BASELINE: str = control_arm()
