"""Variant plans: the DESIGN.md worked example value for value, the window rule, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from align_core.stimuli.plans import (
    DEFAULT_VARIANTS,
    VariantSpec,
    parse_variants,
    plan_variants,
    target_control,
    target_curve,
    window_of,
)

EXAMPLE = [0.3, 0.4, 0.5, 0.6, 0.7, 0.6]
EXPECTED = {
    "early_boost": [0.45, 0.6, 0.5, 0.6, 0.7, 0.6],
    "middle_boost": [0.3, 0.4, 0.75, 0.9, 0.7, 0.6],
    "late_boost": [0.3, 0.4, 0.5, 0.6, 1.0, 0.9],
    "full_boost": [0.45, 0.6, 0.75, 0.9, 1.0, 0.9],
    "reduction": [0.3, 0.4, 0.25, 0.3, 0.7, 0.6],
    "baseline": EXAMPLE,
    "placebo": EXAMPLE,
}


def test_worked_example_value_for_value_as_scenes_and_frames() -> None:
    # Six equal-length items: as six one-second scenes, and as six frames at 1 fps.
    centres = [(i + 0.5) for i in range(6)]
    for spec in DEFAULT_VARIANTS:
        np.testing.assert_allclose(target_curve(EXAMPLE, centres, 6.0, spec), EXPECTED[spec.name], atol=1e-12)
    plans = plan_variants("vid_1", EXAMPLE, fps=1.0, scene_ranges=[(i, i + 1) for i in range(6)])
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(plans[name].frame_target, expected, atol=1e-12)
        np.testing.assert_allclose(plans[name].scene_target, expected, atol=1e-12)


def test_window_rule_on_odd_counts() -> None:
    def windows(n: int) -> list[str]:
        return [window_of((i + 0.5) / n, 1.0) for i in range(n)]

    assert windows(7) == ["early", "early", "middle", "middle", "middle", "late", "late"]
    assert windows(5) == ["early", "early", "middle", "late", "late"]
    assert windows(3) == ["early", "middle", "late"]
    assert windows(1) == ["middle"]
    # Scenes use their centre time: a long first scene whose centre lies in the middle third.
    plans = plan_variants("v", [0.2] * 9, fps=3.0, scene_ranges=[(0, 6), (6, 9)])
    assert plans.scene_windows == ("middle", "late")
    assert plans.frame_windows == ("early",) * 3 + ("middle",) * 3 + ("late",) * 3
    np.testing.assert_allclose(plans["middle_boost"].scene_target, [0.3, 0.2])
    np.testing.assert_allclose(plans["early_boost"].scene_target, [0.2, 0.2])


def test_single_scene_video_and_default_scene() -> None:
    values = np.linspace(0.1, 0.5, 7)
    plans = plan_variants("single", values, fps=7.0)
    assert plans.scene_ranges == ((0, 7),)
    assert plans.scene_windows == ("middle",)
    np.testing.assert_allclose(plans["middle_boost"].scene_target, [min(1.0, values.mean() * 1.5)])
    np.testing.assert_allclose(plans["early_boost"].frame_factor, [1.5, 1.5, 1, 1, 1, 1, 1])


def test_baseline_and_placebo_targets_equal_original_and_keep_control() -> None:
    values = np.array([0.1, 0.9, 0.5, 0.0, 0.3])
    plans = plan_variants("v", values, fps=25.0)
    rng = np.random.default_rng(0)
    mask = rng.random((4, 5)) > 0.5
    attention = rng.random((4, 5)).astype(np.float32)
    for name in ("baseline", "placebo"):
        np.testing.assert_array_equal(plans[name].frame_target, values)
        np.testing.assert_array_equal(plans[name].frame_factor, np.ones(5))
        control = plans[name].control(2, mask, attention)
        np.testing.assert_array_equal(control[1], attention * mask)
    assert plans["placebo"].kind_at(0) == "placebo"
    assert plans["baseline"].kind_at(0) == "identity"
    assert plans["early_boost"].kind_at(0) == "boost" and plans["early_boost"].kind_at(4) == "identity"


def test_target_control_scales_inside_the_mask_and_clips() -> None:
    mask = np.array([[True, False], [True, True]])
    attention = np.array([[0.8, 0.9], [0.2, 0.0]], dtype=np.float32)
    control = target_control(1.5, mask, attention)
    assert control.dtype == np.float32 and control.shape == (2, 2, 2)
    np.testing.assert_array_equal(control[0], mask.astype(np.float32))
    np.testing.assert_allclose(control[1], [[1.0, 0.0], [0.3, 0.0]], atol=1e-6)


def test_new_variant_is_config_not_code_and_bad_config_is_named() -> None:
    specs = parse_variants(
        [
            *(s.to_dict() for s in DEFAULT_VARIANTS),
            {"name": "early_reduction", "window": "early", "factor": 0.5, "kind": "reduce"},
        ]
    )
    plans = plan_variants("v", EXAMPLE, fps=1.0, specs=specs)
    np.testing.assert_allclose(plans["early_reduction"].frame_target, [0.15, 0.2, 0.5, 0.6, 0.7, 0.6])
    with pytest.raises(ValueError, match="late_cut"):
        VariantSpec("late_cut", "late", 1.5, "reduce")
    with pytest.raises(ValueError, match="unique"):
        parse_variants([DEFAULT_VARIANTS[0], DEFAULT_VARIANTS[0]])
    with pytest.raises(ValueError, match="gap"):
        plan_variants("v9", EXAMPLE, fps=1.0, scene_ranges=[(0, 2), (3, 6)])
    with pytest.raises(ValueError, match="v9.*overlap"):
        plan_variants("v9", EXAMPLE, fps=1.0, scene_ranges=[(0, 3), (2, 6)])


def test_tables_serialise_with_string_ids(tmp_path) -> None:
    video_id = "7212345678901234567"  # 19 digits: must never become a float
    plans = plan_variants(video_id, EXAMPLE, fps=1.0, scene_ranges=[(0, 3), (3, 6)])
    path = plans.to_parquet(tmp_path / "plan.parquet")
    table = pd.read_parquet(path)
    assert list(table.columns[:7]) == [
        "video_id",
        "variant",
        "kind",
        "frame",
        "window",
        "original_alignment",
        "target_alignment",
    ]
    assert set(table["video_id"]) == {video_id}
    assert len(table) == 6 * len(DEFAULT_VARIANTS)
    row = table[(table["variant"] == "late_boost") & (table["frame"] == 4)].iloc[0]
    assert row["window"] == "late" and row["factor"] == 1.5 and row["target_alignment"] == pytest.approx(1.0)
    payload = json.loads(plans.to_json(tmp_path / "plan.json").read_text())
    assert payload["video_id"] == video_id and payload["scenes"][0]["video_id"] == video_id
