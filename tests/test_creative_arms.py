"""Creative arms (``kind: creative``): the lab's own ads, compared two-sided and never rendered.

A creative arm has no window or factor, so a plan for it was an identity curve and the renderer
would have produced a copy of baseline under the creative's name; the analysis plan called its
expected direction "lower". Both were wrong: it gets no render plan (the stage says why), and
the plan expects a difference either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from align_core.experiments.config import ExperimentConfig
from align_core.stimuli.plans import DEFAULT_VARIANTS, load_variant_plans, parse_variants, plan_variants
from analysis.preregistration import analysis_plan

ARMS = parse_variants(
    [s.to_dict() for s in DEFAULT_VARIANTS] + [{"name": "creative_b", "kind": "creative"}]  # a lab's own second ad
)


def test_the_plan_expects_a_creative_arm_to_differ_either_way() -> None:
    plan = analysis_plan(ExperimentConfig("spring-ads", ARMS))
    expected = {h["contrast"].split(" vs ")[0]: h["expected"] for h in plan["hypotheses"]["confirmatory"]}
    assert "two-sided" in expected["creative_b"] and "lower" not in expected["creative_b"]
    assert expected["early_boost"] == "higher" and expected["reduction"] == "lower"
    assert expected["placebo"] == "no difference (placebo)"


def test_creative_arms_get_no_render_plan_and_say_why(tmp_path: Path) -> None:
    alignment = np.linspace(0.2, 0.6, 30)
    plans = plan_variants("v1", alignment, fps=10.0, scene_ranges=[(0, 10), (10, 30)], specs=ARMS)
    # the renderer and the quality stage iterate plans.plans: a creative arm is not among them
    assert "creative_b" not in plans.plans and set(plans.plans) == {s.name for s in DEFAULT_VARIANTS}
    assert "creative_b" not in set(plans.frame_table()["variant"]) | set(plans.scene_table()["variant"])
    assert plans.not_rendered["creative_b"].startswith("kind creative: the lab's own creative")
    # the plan file keeps the arm and the reason, and reloads to the same plans
    path = plans.to_json(tmp_path / "plans.json")
    again = load_variant_plans(path)
    assert set(again.plans) == set(plans.plans) and again.not_rendered == plans.not_rendered
