"""Validation cards for every attention scorer on human fixations (NUS Scene images).

Each scorer is scored with its centre prior off (content alone) and on (its default weight),
NSS against the binary fixation maps and CC against them blurred with sigma 0.03 of the larger
side (DESIGN.md). Anything tuned (the centre weights of the independent models; the procedure's
scale weights and gamma, the cue mix and the centre weight of ``feature_richness``) was chosen on
images 001-150 (``--tune`` prints those grids); the cards report images 151-300 only, plus the Gaussian centre-bias baseline on the same images. Cards are
written as package data beside the scorers (``align_core/perception/attention/scorer_cards.json``) and the
manipulation check shows them. Usage::

    .venv/bin/python bench/bench_scorer_cards.py [--shared-data ../shared/data] [--tune] [--limit N]

Scorers: ``feature_richness`` through the platform's meaning-map procedure
(``attention_map(image, scorer, AttentionConfig())``, exactly as the pipeline runs it), and the
independent models (:mod:`align_core.perception.attention.independent`) as full-frame maps, as the check
uses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from align_core.measurement.saliency_metrics import (  # noqa: E402
    blur_fixations,
    cc,
    centre_bias_map,
    load_nus_image,  # noqa: E402
    nss,
)
from align_core.perception.attention import AttentionConfig, attention_map  # noqa: E402
from align_core.perception.attention.base import minmax  # noqa: E402
from align_core.perception.attention.cards import (  # noqa: E402
    REPORT_FRAMES,
    TUNE_FRAMES,
    load_ucf_diving,
    video_card_rows,
)
from align_core.perception.attention.independent import CARDS_FILE, DEFAULT_CENTRE, MODELS, SaliencyModelScorer  # noqa: E402
from align_core.perception.attention.maps import DEFAULT_SCALE_WEIGHTS, DEFAULT_SCALES_DEG  # noqa: E402
from align_core.perception.attention.motion import MotionSettings  # noqa: E402
from align_core.perception.attention.scorers import CUES, FeatureRichnessScorer, FeatureWeights  # noqa: E402

TUNE = range(1, 151)
VALIDATE = range(151, 301)
MAX_EVAL_SIDE = 512  # maps and fixations are compared at this longer side (big NUS images are 3648 px)


def load(root: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image at <= MAX_EVAL_SIDE, binary fixation map at the same size) of NUS image ``index``."""
    image, fixations = load_nus_image(root, index)
    height, width = fixations.shape
    scale = min(1.0, MAX_EVAL_SIDE / max(height, width))
    if scale < 1.0:
        size = (round(width * scale), round(height * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ys, xs = np.nonzero(fixations)
        small = np.zeros((size[1], size[0]), bool)
        small[np.clip((ys * scale).astype(int), 0, size[1] - 1), np.clip((xs * scale).astype(int), 0, size[0] - 1)] = (
            True
        )
        fixations = small
    return image, fixations


def metrics(saliency: np.ndarray, fixations: np.ndarray, density: np.ndarray) -> tuple[float, float]:
    return nss(saliency, fixations), cc(saliency, density)


def content_maps(images, fns: dict[str, Callable[[np.ndarray], np.ndarray]]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        for image, _fix, _den in images:
            out[name].append(minmax(fn(image)))
        print(f"  {name}: {(time.perf_counter() - start) / len(images):.3f} s/img", file=sys.stderr, flush=True)
    return out


def mixed(content: np.ndarray, centre: float) -> np.ndarray:
    prior = centre_bias_map(*content.shape, sigma_frac=0.3)
    return (1.0 - centre) * content + centre * prior


def evaluate(maps: list[np.ndarray], images, centre: float = 0.0) -> dict[str, float]:
    values = np.array([metrics(mixed(m, centre), fix, den) for m, (_im, fix, den) in zip(maps, images, strict=False)])
    return {"NSS": float(values[:, 0].mean()), "CC": float(values[:, 1].mean())}


def feature_richness_fn(
    centre: float, config: AttentionConfig | None = None, **weights: float
) -> Callable[[np.ndarray], np.ndarray]:
    scorer = FeatureRichnessScorer(**{**weights, "centre": centre})
    config = config or AttentionConfig()
    return lambda image: attention_map(image, scorer, config)


# The procedure grid --tune prints for the content part (centre 0): (scales, weights, gamma).
PROCEDURE_GRID: list[tuple[tuple[float, ...], tuple[float, ...], float]] = [
    ((3.0, 7.0), (1.0, 1.0), 3.0),  # version 1 procedure
    ((3.0, 7.0), (1.0, 1.0), 1.5),
    ((3.0,), (1.0,), 1.5),
    ((1.0,), (1.0,), 1.5),
    ((1.0, 3.0), (2.0, 1.0), 1.5),
    ((1.0, 3.0, 7.0), (1.0, 1.0, 1.0), 1.5),
    ((1.0, 3.0, 7.0), (1.0, 1.0, 0.25), 1.5),
    ((1.0, 3.0, 7.0), (2.0, 1.0, 0.5), 1.5),
    ((1.0, 3.0, 7.0), (2.0, 1.0, 0.25), 1.0),
    ((1.0, 3.0, 7.0), (2.0, 1.0, 0.25), 1.5),
    ((1.0, 3.0, 7.0), (2.0, 1.0, 0.25), 2.0),
    ((1.0, 3.0, 7.0), (2.0, 1.0, 0.25), 3.0),
]
# Cue mixes --tune prints under the default procedure (content part, centre 0).
CUE_GRID: list[dict[str, float]] = [
    {"edges": 0.5, "local_colour": 1.0, "text": 0.25},  # version 2 mix
    {"edges": 1.0, "local_colour": 1.0, "text": 0.25},
    {"edges": 1.0, "local_colour": 0.5, "text": 0.25},
    {"edges": 1.0, "local_colour": 1.0, "text": 0.0},
    {"edges": 1.0, "local_colour": 1.0, "text": 0.25, "skin": 0.25},
    {"edges": 1.0, "local_colour": 0.0, "text": 0.0},
    {"edges": 0.0, "local_colour": 1.0, "text": 0.0},
    {"edges": 1.0, "local_colour": 1.0, "text": 0.25, "surround": 4.0},  # version 5: surroundedness
    {"edges": 1.0, "local_colour": 1.0, "text": 0.25, "surround": 8.0},  # version 5 mix
    {"edges": 1.0, "local_colour": 1.0, "text": 0.25, "surround": 12.0},
    {"edges": 0.0, "local_colour": 0.0, "text": 0.0, "surround": 1.0},
]
NO_CUES = {name: 0.0 for name in CUES}


def tune_feature_richness(tune) -> None:
    """Print the procedure, cue-mix and centre-weight grids of ``feature_richness`` on 001-150."""
    print(
        f"feature_richness procedure grid (content part, default cues; default: scales {DEFAULT_SCALES_DEG} "
        f"weights {DEFAULT_SCALE_WEIGHTS} gamma {AttentionConfig().gamma:g})"
    )
    for scales, weights, gamma in PROCEDURE_GRID:
        config = AttentionConfig(scales_deg=scales, scale_weights=weights, gamma=gamma)
        maps = content_maps(tune, {"fr": feature_richness_fn(0.0, config)})["fr"]
        result = evaluate(maps, tune)
        print(
            f"  scales {scales!s:16s} weights {weights!s:18s} gamma {gamma:g}: NSS {result['NSS']:.3f} CC {result['CC']:.3f}",
            flush=True,
        )
    print("feature_richness cue-mix grid (content part, default procedure)")
    for mix in CUE_GRID:
        maps = content_maps(tune, {"fr": feature_richness_fn(0.0, **{**NO_CUES, **mix})})["fr"]
        result = evaluate(maps, tune)
        print(f"  {mix}: NSS {result['NSS']:.3f} CC {result['CC']:.3f}", flush=True)
    print("feature_richness NSS/CC by centre weight and prior sigma (default procedure and cues)")
    for sigma in (0.2, 0.25, 0.3):
        cells = []
        for centre in (0.3, 0.4, 0.5, 0.6):
            maps = content_maps(tune, {"fr": feature_richness_fn(centre, centre_sigma_frac=sigma)})["fr"]
            result = evaluate(maps, tune)
            cells.append(f"c{centre:.1f}:{result['NSS']:.3f}/{result['CC']:.3f}")
        print(f"  sigma {sigma:g}: {' '.join(cells)}", flush=True)


MOTION_GRID = [(0.5, 4, 20), (1, 2, 12), (1, 4, 60), (2, 8, 60), (2, 12, 60), (3, 8, 60), (2, 8, 40), (3, 12, 60)]


def tune_motion(shared_data: Path) -> None:
    """Print the default's NSS/CC on UCF frames 0-25 by motion weight, floor and saturation."""
    clip = load_ucf_diving(shared_data)
    print(
        f"motion cue grid on {clip.name} frames {TUNE_FRAMES.start}-{TUNE_FRAMES.stop - 1} (weight, floor, saturation)"
    )
    for weight, floor, saturation in MOTION_GRID:
        settings = MotionSettings(floor=floor, saturation=saturation)
        rows = video_card_rows(clip, TUNE_FRAMES, FeatureWeights(motion=weight), independent=False, motion=settings)
        print(f"  {weight:g} {floor:g} {saturation:g}: NSS {rows['default']['NSS']:.3f} CC {rows['default']['CC']:.3f}")


def video_cards(shared_data: Path, cards: dict[str, dict], centre_bias: dict[str, float]) -> dict[str, Any]:
    """The video card (UCF frames 26-51) and the same rows on NUS 151-300 (stills: no motion rows)."""
    clip = load_ucf_diving(shared_data)
    ucf = video_card_rows(clip, REPORT_FRAMES)
    fr = cards["feature_richness"]
    nus: dict[str, Any] = {
        "default": fr["with_centre_prior"],
        "image part": fr["content_only"],
        "motion part": None,
        "centre part": fr.get("centre_part"),
        **{name: cards[name]["with_centre_prior"] for name in ("itti_koch", "image_signature", "spectral_residual")},
        "frame difference": None,
        "centre bias": centre_bias,
    }
    print(f"{'video card row':18s} {'UCF NSS':>8s} {'UCF CC':>7s}  {'NUS NSS':>8s} {'NUS CC':>7s}")
    for name, row in ucf.items():
        other = nus.get(name)
        tail = f"{other['NSS']:8.3f} {other['CC']:7.3f}" if other else f"{'-':>8s} {'-':>7s}"
        print(f"{name:18s} {row['NSS']:8.3f} {row['CC']:7.3f}  {tail}")
    return {
        "scorer_id": FeatureRichnessScorer().scorer_id,
        "ucf_sports_diving": {
            "dataset": "UCF Sports Diving-Side-001 (shared/data/saliency/ucf_sports_diving), 52 frames",
            "tuned_on": f"frames {TUNE_FRAMES.start}-{TUNE_FRAMES.stop - 1}",
            "reported_on": f"frames {REPORT_FRAMES.start}-{REPORT_FRAMES.stop - 1}",
            "rows": ucf,
        },
        "nus_scene": {"reported_on": "151-300", "rows": nus},
        "metrics": "NSS vs binary fixations, CC vs fixations blurred sigma 0.03 of the larger side, mean per frame",
    }


def tune_models(tune, models: dict[str, Callable[[np.ndarray], np.ndarray]]) -> None:
    """Print the independent models' centre-weight grids and the feature_richness grids on 001-150."""
    print(f"tuning split: NUS Scene 001-150 ({len(tune)} images)")
    maps = content_maps(tune, models)
    for name, model_maps in maps.items():
        cells = " ".join(
            f"c{c:.1f}:{evaluate(model_maps, tune, c)['NSS']:.3f}" for c in (0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        )
        print(f"{name:18s} NSS by centre weight: {cells}")
    plain = evaluate(maps["spectral_residual"], tune)
    print(f"plain spectral residual content part on 001-150: NSS {plain['NSS']:.3f} CC {plain['CC']:.3f}")
    tune_feature_richness(tune)


def image_cards(validate, models: dict[str, Callable[[np.ndarray], np.ndarray]]) -> dict[str, dict]:
    """The image card of every independent model and of ``feature_richness`` on ``validate``."""
    default_weights = FeatureWeights()
    cards: dict[str, dict] = {}
    for name, model_maps in content_maps(validate, models).items():
        scorer = SaliencyModelScorer(name)
        cards[name] = {
            "scorer_id": scorer.scorer_id,
            "what_it_is": MODELS[name][1],
            "centre_weight": DEFAULT_CENTRE[name],
            "centre_sigma_frac": scorer.centre_sigma_frac,
            "content_only": evaluate(model_maps, validate, 0.0),
            "with_centre_prior": evaluate(model_maps, validate, DEFAULT_CENTRE[name]),
            "used_as": "independent verifier (full-frame map)",
        }
    fr_fns = {
        "content_only": feature_richness_fn(0.0),
        "with_centre_prior": feature_richness_fn(default_weights.centre),
    }
    fr_maps = content_maps(validate, fr_fns)
    centre_part = [
        centre_bias_map(*fix.shape, sigma_frac=default_weights.centre_sigma_frac) for _im, fix, _den in validate
    ]
    cards["feature_richness"] = {
        "scorer_id": FeatureRichnessScorer().scorer_id,
        "what_it_is": "platform default: cue mix (edges, local colour contrast, strokes, surroundedness) "
        "through the meaning-map procedure (1, 3 and 7 degree patches "
        f"weighted {':'.join(f'{w:g}' for w in DEFAULT_SCALE_WEIGHTS)}, gamma {AttentionConfig().gamma:g}); "
        "in videos plus a per-frame residual-motion cue (see the video cards)",
        "centre_weight": default_weights.centre,
        "centre_sigma_frac": default_weights.centre_sigma_frac,
        # maps already include the prior as the scorer mixes it: evaluate them as they are
        "content_only": evaluate(fr_maps["content_only"], validate, 0.0),
        "with_centre_prior": evaluate(fr_maps["with_centre_prior"], validate, 0.0),
        "centre_part": evaluate(centre_part, validate, 0.0),
        "used_as": "calibrating scorer (attention maps, editor calibration)",
    }
    return cards


def print_cards(cards: dict[str, dict], baseline: dict[str, float], procedure_reference: dict[str, float]) -> None:
    print(f"{'scorer':18s} {'NSS':>7s} {'CC':>7s}  {'NSS+c':>7s} {'CC+c':>7s}  centre")
    for name, card in cards.items():
        print(
            f"{name:18s} {card['content_only']['NSS']:7.3f} {card['content_only']['CC']:7.3f}  "
            f"{card['with_centre_prior']['NSS']:7.3f} {card['with_centre_prior']['CC']:7.3f}  {card['centre_weight']:g}"
        )
    print(f"{'centre bias 0.3':18s} {'':7s} {'':7s}  {baseline['NSS']:7.3f} {baseline['CC']:7.3f}")
    print(f"{'SR via procedure':18s} {procedure_reference['NSS']:7.3f} {procedure_reference['CC']:7.3f}")
    ours = cards["feature_richness"]["content_only"]
    for metric in ("NSS", "CC"):
        best = max((name for name in MODELS), key=lambda name: cards[name]["content_only"][metric])
        theirs = cards[best]["content_only"][metric]
        print(
            f"feature_richness content part {'matches or beats' if ours[metric] >= theirs else 'DOES NOT match'} the "
            f"best independent content part ({best}) on {metric} ({ours[metric]:.3f} vs {theirs:.3f})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="print the tuning grids (centre weights; feature_richness procedure, cue mix, centre) on images 001-150",
    )
    parser.add_argument(
        "--tune-video",
        action="store_true",
        help="print the motion cue's grid (weight, floor, saturation) on the UCF clip's first half (frames 0-25)",
    )
    parser.add_argument(
        "--video-only",
        action="store_true",
        help="recompute only the video cards (UCF frames 26-51) into the stored cards (the image cards are unchanged)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split (quick look)")
    parser.add_argument("--out", type=Path, default=ROOT / "align_core" / "perception" / "attention" / CARDS_FILE)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    root = args.shared_data / "saliency" / "nus_scene"

    def split(indices: range) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        chosen = list(indices)[: args.limit] if args.limit else list(indices)
        out = []
        for index in chosen:
            image, fixations = load(root, index)
            out.append((image, fixations, blur_fixations(fixations)))
        return out

    if args.tune_video:
        tune_motion(args.shared_data)
        return 0
    if args.video_only:
        stored = json.loads(args.out.read_text())
        stored["video"] = video_cards(args.shared_data, stored["scorers"], stored["centre_bias_baseline"])
        args.out.write_text(json.dumps(stored, indent=1) + "\n")
        print(f"video cards written to {args.out}")
        return 0
    models = {name: (lambda n: lambda image: MODELS[n][0](image))(name) for name in MODELS}
    if args.tune:
        tune_models(split(TUNE), models)
        return 0
    validate = split(VALIDATE)
    print(f"validation split: NUS Scene 151-300 ({len(validate)} images); tuned (if at all) on 001-150")
    cards = image_cards(validate, models)
    # Reference: plain spectral residual pushed through the same meaning-map procedure (content only),
    # to separate what the procedure costs from what the cues give.
    sr_procedure = content_maps(validate, {"sr": feature_richness_fn(0.0, **{**NO_CUES, "spectral": 1.0})})["sr"]
    procedure_reference = evaluate(sr_procedure, validate, 0.0)
    baseline = evaluate([centre_bias_map(*fix.shape, sigma_frac=0.3) for _im, fix, _den in validate], validate, 0.0)
    print_cards(cards, baseline, procedure_reference)
    if args.limit:
        print("--limit given: cards not written")
        return 0
    payload = {
        "dataset": "NUS Scene (shared/data/saliency/nus_scene)",
        "tuned_on": "001-150",
        "reported_on": "151-300",
        "images": len(validate),
        "metrics": "NSS vs binary fixations; CC vs fixations blurred sigma 0.03 of the larger side; maps at <= 512 px",
        "centre_bias_baseline": baseline,
        "spectral_residual_through_meaning_map_procedure": procedure_reference,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "bench/bench_scorer_cards.py",
        "scorers": cards,
        "video": video_cards(args.shared_data, cards, baseline),
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"cards written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
