"""The manipulation check passes for the salience editor and fails for editors that do not deliver."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_render import FPS, SCENES, synthetic_ad, write_source
from test_salience_editor import spectral_residual_attention

from align_core.io.video_io import read_frames
from align_core.measurement.manipulation import (
    CheckThresholds,
    alignment,
    calibrate_strength_map,
    check_rendered_variants,
    manipulation_check,
)
from align_core.stimuli.editing.base import KeyframeEditRequest
from align_core.stimuli.editing.propagation import keyframe_indices
from align_core.stimuli.editing.render import render_variants
from align_core.stimuli.editing.salience import SalienceEditor
from align_core.stimuli.plans import plan_variants

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

STRIDE = 4


class PassThroughEditor:
    """Broken on purpose: returns every keyframe unchanged (the original code's 'edits')."""

    name = "pass_through"
    propagation = "keyframes"
    calibrates = False

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        return request.frame.copy()

    def lineage(self) -> dict[str, Any]:
        return {"editor": self.name}


class BackwardsEditor:
    """Broken on purpose: answers a boost by enriching the background (a reduction)."""

    name = "backwards"
    propagation = "keyframes"
    calibrates = False

    def __init__(self) -> None:
        self._inner = SalienceEditor()

    def edit(self, request: KeyframeEditRequest) -> np.ndarray:
        kind = {"boost": "reduce", "reduce": "boost"}.get(request.kind, request.kind)
        return self._inner.edit(KeyframeEditRequest(**{**request.__dict__, "kind": kind}))

    def lineage(self) -> dict[str, Any]:
        return {"editor": self.name}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("manip")
    frames, masks = synthetic_ad(seed=1)
    source = write_source(root / "ad_2.mp4", frames)
    decoded = read_frames(source)  # the platform scores the decoded video, as the check does
    attention = np.stack([spectral_residual_attention(f) for f in decoded])
    a = np.array([alignment(att, m) for att, m in zip(attention, masks, strict=False)])
    plans = plan_variants("ad_2", a, FPS, SCENES)
    keys = keyframe_indices(SCENES, STRIDE)
    strength_map, points = calibrate_strength_map(
        SalienceEditor(), decoded[keys], masks[keys], spectral_residual_attention
    )
    return root, source, frames, masks, attention, plans, strength_map, points


def render_and_check(setup, editor, name: str):
    root, source, _frames, masks, attention, plans, strength_map, _points = setup
    result = render_variants(
        source, plans, masks, attention, editor, root / name, keyframe_stride=STRIDE, strength_map=strength_map
    )
    return check_rendered_variants(plans, source, result.variant_paths, masks, spectral_residual_attention)


def test_calibration_measures_monotone_effects(setup) -> None:
    *_rest, strength_map, points = setup
    boost = [p.mean_log_ratio for p in points if p.kind == "boost"]
    reduce = [p.mean_log_ratio for p in points if p.kind == "reduce"]
    assert all(b > 0 for b in boost) and boost[-1] > boost[0]
    assert all(r < 0 for r in reduce)  # reductions saturate with this scorer; the map keeps the envelope
    assert "calibrated on" in strength_map.source
    assert 0 < strength_map.strength_for("boost", 0.2, 0.3) <= 1


def test_salience_editor_passes_the_manipulation_check(setup) -> None:
    report = render_and_check(setup, SalienceEditor(), "salience")
    failing = report.table[~report.table["passed"]]
    assert report.passed, failing[["variant", "window", "reason"]].to_string()
    table = report.table
    assert list(table.columns[:4]) == ["video_id", "variant", "kind", "window"]
    early = table[(table["variant"] == "early_boost") & (table["window"] == "early")].iloc[0]
    assert early["achieved_delta"] > 0 and early["target_delta"] > 0
    reduction = table[(table["variant"] == "reduction") & (table["window"] == "middle")].iloc[0]
    assert reduction["achieved_delta"] < 0


def test_pass_through_editor_fails_every_boost(setup) -> None:
    report = render_and_check(setup, PassThroughEditor(), "pass_through")
    verdicts = report.verdicts.set_index("variant")["passed"]
    for name in ("early_boost", "middle_boost", "late_boost", "full_boost", "reduction"):
        assert not verdicts[name], name
    assert verdicts["baseline"] and not report.passed


def test_backwards_editor_fails_on_sign(setup) -> None:
    report = render_and_check(setup, BackwardsEditor(), "backwards")
    row = report.table[(report.table["variant"] == "full_boost") & (report.table["window"] == "all")].iloc[0]
    assert row["achieved_delta"] < 0 and not row["passed"]
    assert not report.verdict("full_boost")


def test_check_rules_on_hand_made_curves() -> None:
    values = np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.6])
    plans = plan_variants("v", values, fps=1.0)
    achieved = {name: values.copy() for name in plans.plans}
    achieved["early_boost"] = values + np.array([0.05, 0.05, 0, 0, 0, 0])  # 0.05 of a planned 0.175: 29%
    achieved["middle_boost"] = values + np.array([0, 0, 0.01, 0.01, 0, 0])  # 3% of planned: fails
    achieved["late_boost"] = values + np.array([0.1, 0, 0, 0, 0.3, 0.3])  # on target, but leaks early
    achieved["placebo"] = values - 0.05  # moved alignment: fails
    report = manipulation_check(plans, achieved, values, CheckThresholds(min_share=0.25, tolerance=0.03))
    verdict = report.verdicts.set_index("variant")["passed"]
    assert verdict["baseline"] and verdict["early_boost"]
    assert not verdict["middle_boost"] and not verdict["placebo"] and not verdict["late_boost"]
    late = report.table[(report.table["variant"] == "late_boost") & (report.table["window"] == "early")].iloc[0]
    assert "outside its window" in late["reason"]
    row = report.table[(report.table["variant"] == "early_boost") & (report.table["window"] == "early")].iloc[0]
    assert row["target_delta"] == pytest.approx(0.175) and row["share_achieved"] == pytest.approx(0.05 / 0.175)


def test_calibration_weighs_frames_by_alignment() -> None:
    """log(sum a' / sum a): a nearly absent product's large ratio must not dominate the effect."""
    frames = [np.full((8, 8, 3), value, np.uint8) for value in (10, 20)]
    product = np.zeros((8, 8), bool)
    product[:, 4:] = True
    shares = {10: 0.5, 20: 0.01, 11: 0.4, 21: 0.001}  # the marker editor adds 1 to every pixel

    def attention_fn(frame: np.ndarray) -> np.ndarray:
        share = shares[int(frame[0, 0, 0])]
        return np.where(product, share, 1.0 - share).astype(np.float32)  # mass on the product = share

    class Marker:
        name = "marker"
        propagation = "keyframes"
        calibrates = True

        def edit(self, request: KeyframeEditRequest) -> np.ndarray:
            return request.frame + np.uint8(1)

        def lineage(self) -> dict[str, Any]:
            return {"editor": self.name}

    _map, points = calibrate_strength_map(Marker(), frames, [product, product], attention_fn, strengths=(1.0,))
    reduce = next(p for p in points if p.kind == "reduce")
    assert reduce.mean_log_ratio == pytest.approx(np.log((0.4 + 0.001) / (0.5 + 0.01)), abs=1e-6)
    # the mean of per-frame log ratios would have been log(0.8)/2 + log(0.1)/2 = -1.26
