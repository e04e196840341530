"""Every limit of the perceptual budget can be set where the two mean limits are: on the editor resource
(what the renderer aims for) and on ``variant_quality`` (what the check enforces), by name, and a
misspelt or out-of-range name is refused before any frame is read."""

from __future__ import annotations

import pytest
from dagster import validate_run_config

from align_assets.definitions import defs
from align_core.components import EditorChoice
from align_core.measurement.manipulation import VerificationSettings
from align_core.measurement.perceptual_budget import DEFAULT_MAX_VISIBLE_SHARE, BudgetMeasure, PerceptualBudget


def test_named_limits_override_their_defaults_and_leave_the_others() -> None:
    budget = PerceptualBudget.from_settings(0.92, 5.0, {"max_visible_share": 0.01, "min_sharpness": 0.9})
    assert (budget.min_ssim, budget.max_delta_e, budget.max_visible_share, budget.min_sharpness) == (
        0.92,
        5.0,
        0.01,
        0.9,
    )
    assert budget.min_product_ssim == PerceptualBudget().min_product_ssim
    assert PerceptualBudget.from_settings(0.9, 6.0).max_visible_share == DEFAULT_MAX_VISIBLE_SHARE


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_visible_shares": 0.01}, r"unknown limit\(s\) \['max_visible_shares'\]"),
        ({"min_ssim": 0.95}, r"unknown limit\(s\) \['min_ssim'\].*own settings"),
        ({"min_patch_ssim": 1.5}, r"min_patch_ssim must be in \(0, 1\]"),
    ],
)
def test_a_wrong_limit_is_refused_with_its_name(limits: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PerceptualBudget.from_settings(0.9, 6.0, limits)
    with pytest.raises(ValueError, match=message):
        VerificationSettings(budget_limits=tuple(limits.items()))


def test_the_check_enforces_the_configured_limits() -> None:
    settings = VerificationSettings(min_ssim=0.95, budget_limits=(("max_visible_share", 0.005),))
    figures = BudgetMeasure(ssim=1.0, delta_e=0.0, pixels=1000, visible_share=0.01).to_dict()
    assert settings.budget.violations(figures) == ["share changed > 10 CIEDE2000 0.01 > 0.005"]
    assert VerificationSettings().budget.violations(figures) == []


def test_the_editor_resource_renders_under_its_configured_limits() -> None:
    editor = EditorChoice(editor="salience", max_delta_e=4.0, budget_limits={"min_patch_ssim": 0.85}).build(
        prompt="a bottle"
    )
    assert editor.budget == PerceptualBudget(max_delta_e=4.0, min_patch_ssim=0.85)
    assert editor.lineage()["perceptual_budget"]["min_patch_ssim"] == 0.85  # recorded with every variant


def test_dagster_accepts_the_limits_as_run_config() -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    config = {"ops": {"variant_quality": {"config": {"budget_limits": {"max_visible_share": 0.01}}}}}
    assert validate_run_config(job, config)["ops"]["variant_quality"]["config"]["budget_limits"] == {
        "max_visible_share": 0.01
    }
