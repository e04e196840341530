"""Issue 24: the salience editor spends its background budget where the calibrating scorer puts attention.

One frame: a product, one salient distractor (a saturated, high-contrast checkered disc) and a flat,
lightly textured wall. The scorer is the platform's calibrating one (``feature_richness`` through the
attention-map procedure), read as its output. The edit weighted by that map must move more of the
outside-product attention per unit of the local budget than the same edit with a flat map (the uniform
weighting of editor version 4), and leave the least attended wall alone.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from align_core.measurement.manipulation import alignment
from align_core.measurement.perceptual_budget import LIMITS, PerceptualBudget, measure
from align_core.perception.attention import AttentionConfig
from align_core.perception.attention.scorers import SCORERS
from align_core.stages.attention import AttentionMeasure
from align_core.stimuli.editing.base import KeyframeEditRequest
from align_core.stimuli.editing.salience import SalienceEditor

HEIGHT, WIDTH = 144, 256
LOCAL = ("visible_share", "patch_ssim", "sharpness", "patch_sharpness")
_YY, _XX = np.mgrid[:HEIGHT, :WIDTH]
DISC = (_YY - 72) ** 2 + (_XX - 170) ** 2 < 18**2  # the salient distractor


def scene() -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frame and the product mask: a flat wall with fine grain along the top and bottom edges
    (texture the centre-biased scorer barely attends), the product and one salient striped disc."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    frame = np.zeros((HEIGHT, WIDTH, 3), np.float32) + np.array([150, 146, 138], np.float32)
    border = (yy < 22) | (yy >= HEIGHT - 22)
    grain = cv2.GaussianBlur(rng.normal(0, 18, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 0.8)
    frame[border] += grain[border][:, None]
    product = (np.abs(yy - 72) < 22) & (np.abs(xx - 90) < 18)
    frame[product] = (40, 90, 170)
    frame[DISC] = (230, 40, 30)
    frame[DISC & ((xx // 5) % 2 == 0)] = (250, 220, 60)
    return np.clip(frame, 0, 255).astype(np.uint8), product


def scorer() -> AttentionMeasure:
    return AttentionMeasure(SCORERS.build("feature_richness"), AttentionConfig(max_long_side=256))


def edited(frame: np.ndarray, product: np.ndarray, distractor: np.ndarray | None, kind: str) -> np.ndarray:
    """The editor's operations at strength 0.5 (uncapped), weighted by ``distractor`` or uniform (None)."""
    editor = SalienceEditor()
    operation = editor.boost_image if kind == "boost" else editor.reduce_image
    image = frame.astype(np.float32) / 255.0
    return np.clip(np.rint(operation(image, product, 0.5, None, distractor) * 255), 0, 255).astype(np.uint8)


def local_budget_used(frame: np.ndarray, out: np.ndarray, product: np.ndarray) -> float:
    """The largest share of a local limit the edit used (1: at the limit)."""
    excess = PerceptualBudget().excess(measure(frame, out, product).to_dict())
    return 1.0 + max(excess[limit.setting] for limit in LIMITS if limit.measure in LOCAL)


def test_the_weighted_edit_buys_more_attention_per_unit_of_local_budget() -> None:
    """The same operations at the same strength: more of the product's share per unit of the local budget."""
    frame, product = scene()
    measure_attention = scorer()
    attention = np.asarray(measure_attention(frame), np.float32)
    before = alignment(attention, product)
    weight = SalienceEditor().distractor_weight(attention, product)
    gains = {}
    for name, given in (("weighted", weight), ("uniform", None)):
        out = edited(frame, product, given, "boost")
        moved = alignment(np.asarray(measure_attention(out), np.float32), product) - before
        gains[name] = moved / local_budget_used(frame, out, product)
    assert gains["uniform"] > 0
    # The old (uniform) editor gives exactly equal gains. The margin is thin and scorer-dependent:
    # +8 % with feature_richness v4, +2.6 % with v5, whose surroundedness cue already favours the product.
    assert gains["weighted"] > 1.015 * gains["uniform"], gains


@pytest.mark.parametrize(("kind", "margin"), [("boost", 1.005), ("reduce", 1.01)])
def test_within_the_budget_the_weighted_edit_moves_attention_further(kind: str, margin: float) -> None:
    """What the manipulation check measures: the product's share after the editor's own budget search
    (every limit held), with the scorer's map against a flat one (uniform operations)."""
    frame, product = scene()
    measure_attention = scorer()
    attention = np.asarray(measure_attention(frame), np.float32)
    before = alignment(attention, product)
    moved = {}
    for name, given in (("weighted", attention), ("uniform", np.full_like(attention, 0.2))):
        request = KeyframeEditRequest(
            frame=frame,
            mask=product,
            attention=given,
            target_control=None,  # type: ignore[arg-type]
            original_alignment=before,
            target_alignment=before,
            allowed=np.ones(product.shape, bool),
            kind=kind,  # type: ignore[arg-type]
            strength=1.0,
            seed=0,
        )
        out, report = SalienceEditor().edit_with_report(request)
        assert measure(frame, out, product).within(PerceptualBudget()), report
        change = alignment(np.asarray(measure_attention(out), np.float32), product) - before
        moved[name] = change if kind == "boost" else -change
    assert moved["uniform"] > 0
    assert moved["weighted"] > margin * moved["uniform"], moved


def test_the_least_attended_background_is_spared_and_the_distractor_gets_the_full_weight() -> None:
    frame, product = scene()
    attention = np.asarray(scorer()(frame), np.float32)
    editor = SalienceEditor()
    weight = editor.distractor_weight(attention, product)
    assert weight is not None and weight.shape == product.shape
    assert weight[DISC].min() == pytest.approx(1.0)
    spared = (weight < 0.25) & ~product
    assert spared.mean() > 0.01
    change = {
        name: np.abs(edited(frame, product, given, "boost").astype(int) - frame)[spared].mean()
        for name, given in (("weighted", weight), ("uniform", None))
    }
    assert change["weighted"] < 0.5 * change["uniform"], change
    assert editor.distractor_weight(np.full_like(attention, 0.3), product) is None  # a flat map: uniform
    assert editor.distractor_weight(attention[:, :-1], product) is None  # a map of another size: uniform
