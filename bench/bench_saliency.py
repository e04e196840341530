"""Attention accuracy against human fixations on the shared NUS "Scene" images 001-010.

Methods: the default ``feature_richness`` attention map (full meaning-map procedure at the
default phone geometry, ``attention_map`` exactly as the pipeline calls it), the centre prior
alone pushed through the same procedure (shows what the image content adds), the
``spectral_residual`` scorer through the procedure, plain spectral-residual saliency (Hou &
Zhang), and the Gaussian centre-bias baseline (sigma 0.3 of width/height). NSS and AUC-Judd use
the binary fixation maps; CC, KLD and SIM use them blurred with sigma 0.03 of the larger side
(DESIGN.md). The DESIGN floors are centre bias NSS 1.085 / CC 0.490. Usage::

    .venv/bin/python bench/bench_saliency.py [path/to/shared/data]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from align_core.measurement.saliency_metrics import (
    auc_judd,
    blur_fixations,
    cc,
    centre_bias_map,
    kld,
    load_nus_image,
    nss,
    sim,
)
from align_core.perception.attention import AttentionConfig, attention_map, make_patch_scorer, spectral_residual

METRICS = ("NSS", "CC", "KLD", "SIM", "AUC-Judd")


def load_images(root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, rgb image, binary fixation map)`` for images 001-010, checked for matching sizes."""
    return [(f"{index:03d}", *load_nus_image(root, index)) for index in range(1, 11)]


def evaluate(
    method: Callable[[np.ndarray], np.ndarray], images: list[tuple[str, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """``(n_images, 5)`` metric values."""
    rows = []
    for _, image, fixations in images:
        saliency = method(image)
        density = blur_fixations(fixations)
        rows.append(
            [
                nss(saliency, fixations),
                cc(saliency, density),
                kld(saliency, density),
                sim(saliency, density),
                auc_judd(saliency, fixations),
            ]
        )
    return np.asarray(rows)


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    images = load_images(shared / "saliency" / "nus_scene")
    config = AttentionConfig()
    default = make_patch_scorer("feature_richness")
    centre_only = make_patch_scorer("feature_richness", centre=1.0)
    spectral_scorer = make_patch_scorer("spectral_residual")
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"default attention map ({default.name})": lambda im: attention_map(im, default, config),
        "centre prior only, same procedure": lambda im: attention_map(im, centre_only, config),
        "spectral_residual scorer, same procedure": lambda im: attention_map(im, spectral_scorer, config),
        "plain spectral residual": spectral_residual,
        "centre-bias baseline (sigma 0.3)": lambda im: centre_bias_map(*im.shape[:2], sigma_frac=0.3),
    }
    print(f"NUS scene images 001-010 ({len(images)}), default scorer {default.scorer_id}")
    print(f"{'method':44s} " + " ".join(f"{m:>8s}" for m in METRICS) + "   s/img")
    results = {}
    for name, method in methods.items():
        start = time.perf_counter()
        values = evaluate(method, images)
        seconds = (time.perf_counter() - start) / len(images)
        results[name] = values.mean(axis=0)
        print(f"{name:44s} " + " ".join(f"{v:8.3f}" for v in results[name]) + f"   {seconds:.3f}")
    ours = results[f"default attention map ({default.name})"]
    base = results["centre-bias baseline (sigma 0.3)"]
    verdict = "beats" if ours[0] > base[0] and ours[1] > base[1] else "DOES NOT beat"
    print(
        f"default {verdict} the centre-bias baseline on NSS ({ours[0]:.3f} vs {base[0]:.3f}) "
        f"and CC ({ours[1]:.3f} vs {base[1]:.3f}); lower KLD is better"
    )
    per_image = (
        evaluate(methods[f"default attention map ({default.name})"], images)[:, 0]
        - evaluate(methods["centre-bias baseline (sigma 0.3)"], images)[:, 0]
    )
    print(
        "per-image NSS gain over centre bias: "
        + " ".join(f"{n}:{g:+.2f}" for (n, _, _), g in zip(images, per_image, strict=True))
    )


if __name__ == "__main__":
    main()
