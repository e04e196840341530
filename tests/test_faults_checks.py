"""Fault suite, issue 15 items 4 and 5: a variant that changed nothing never passes, and only
variants that passed their checks are eligible for an experiment.
"""

from __future__ import annotations

import numpy as np

from align_core.measurement.manipulation import CheckThresholds, manipulation_check
from align_core.stimuli.plans import plan_variants


def test_boost_of_a_window_without_product_frames_is_not_manipulable() -> None:
    # The product appears only in the last two thirds: an early boost plans nothing, and its
    # render is baseline itself. Measured exactly like baseline, it must not pass.
    values = np.array([0.0, 0.0, 0.5, 0.6, 0.7, 0.6])
    plans = plan_variants("v", values, fps=1.0)
    achieved = {name: values.copy() for name in plans.plans}
    achieved["middle_boost"] = values + np.array([0, 0, 0.25, 0.3, 0, 0])
    achieved["late_boost"] = values + np.array([0, 0, 0, 0, 0.3, 0.3])
    achieved["full_boost"] = values + np.array([0, 0, 0.25, 0.3, 0.3, 0.3])
    achieved["reduction"] = values - np.array([0, 0, 0.25, 0.3, 0, 0])
    product_frames = values > 0
    report = manipulation_check(plans, achieved, values, CheckThresholds(), product_frames=product_frames)
    verdicts = report.verdicts.set_index("variant")
    early = verdicts.loc["early_boost"]
    assert not early["passed"] and early["status"] == "not_manipulable"
    assert "no product frames in its early window" in early["reason"]
    rows = report.table[report.table["variant"] == "early_boost"]
    assert not rows["passed"].any() and set(rows["status"]) == {"not_manipulable"}
    assert not any(reason.startswith("ok") for reason in rows["reason"])
    # The rest is judged as before: the full boost still changes the windows with a product.
    for name in ("baseline", "middle_boost", "late_boost", "full_boost", "reduction", "placebo"):
        assert verdicts.loc[name, "status"] == "passed", (name, verdicts.loc[name, "reason"])
    assert not report.passed


def test_boost_at_the_alignment_ceiling_is_not_manipulable() -> None:
    values = np.array([1.0, 1.0, 0.5, 0.6, 0.7, 0.6])  # early alignment already 1: x1.5 clips to 1
    plans = plan_variants("v", values, fps=1.0)
    achieved = {name: values.copy() for name in plans.plans}
    report = manipulation_check(plans, achieved, values, CheckThresholds())
    early = report.verdicts.set_index("variant").loc["early_boost"]
    assert early["status"] == "not_manipulable" and "already at its bound" in early["reason"]
