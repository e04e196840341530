"""Protected content: OCR speed, and the stimulus checks on a materialized demo.

    python -m bench.bench_protect                       # OCR timing only
    python -m bench.bench_protect --data-dir data       # + per video and variant: PSNR / CER

OCR timing: PP-OCRv4 (rapidocr-onnxruntime, 1 onnxruntime thread) on a demo ad frame at the
demo size (288x512) and the same frame scaled to 1080x1920 (real ads), detection + recognition,
median of ``--repeats`` runs after one warm-up. With ``--data-dir`` pointing at a data directory
where the demo graph was materialized (``align-demo``), it re-runs the stimulus checks on every
edited video's rendered variants and prints the per-variant table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from align_core.inputs.catalog import load_catalog
from align_core.io.layout import DataLayout
from align_core.io.video_io import read_frame
from align_core.measurement.stimulus_checks import StimulusThresholds, check_stimuli
from align_core.perception.protect import TextReader, load_protected_regions
from align_core.stimuli.plans import load_variant_plans


def _demo_frame() -> np.ndarray:
    """A frame of a freshly rendered demo ad (captions, banner, price tag)."""
    import tempfile

    from align_demo.corpus import generate_demo_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = generate_demo_corpus(Path(tmp), n_videos=1, seed=7, n_empty_keywords=0, n_cta_keywords=0)
        return read_frame(corpus.videos[0].path, 10)


def ocr_timing(repeats: int) -> pd.DataFrame:
    reader = TextReader(threads=1)
    frame = _demo_frame()
    rows = []
    for label, image in (
        ("demo 288x512", frame),
        ("1080x1920", cv2.resize(frame, (1080, 1920), interpolation=cv2.INTER_CUBIC)),
    ):
        reader.read(image)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = reader.read(image)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "frame": label,
                "seconds_per_frame": statistics.median(times),
                "lines": len(found),
                "texts": " | ".join(d.text for d in found),
            }
        )
    return pd.DataFrame(rows)


def demo_checks(data_dir: Path) -> pd.DataFrame:
    layout = DataLayout(data_dir)
    reader = TextReader(threads=1)
    tables = []
    for plan_dir in sorted((layout.artifacts_dir / "variant_plans").iterdir()):
        plan_file = plan_dir / "plans.json"
        if not plan_file.exists():
            continue
        video_id = plan_dir.name
        plans = load_variant_plans(plan_file)
        catalog = load_catalog(layout.artifact_dir("video_catalog", video_id))
        protect = load_protected_regions(layout.artifact_dir("protected_regions", video_id))
        paths = {name: layout.artifact_dir("variant_videos", video_id) / f"{name}.mp4" for name in plans.plans}
        t0 = time.perf_counter()
        report = check_stimuli(
            video_id,
            catalog.probe.path,
            paths,
            plans.baseline_name(),
            protect,
            reader,
            StimulusThresholds(),
            protect.text_keyframes(),
            scenes=catalog.scene_ranges,
        )
        table = report.table()
        table["check_s"] = time.perf_counter() - t0
        table["strings"] = len(set(protect.ocr["text"]))
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    print("OCR (PP-OCRv4, rapidocr-onnxruntime, 1 thread): detection + recognition per frame")
    print(ocr_timing(args.repeats).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.data_dir is not None:
        table = demo_checks(args.data_dir)
        columns = [
            "video_id",
            "variant",
            "frames_measured",
            "psnr_vs_baseline_db",
            "psnr_worst_frame_db",
            "codec_psnr_db",
            "passed_psnr",
            "ocr_frames",
            "stable_boxes",
            "unstable_boxes",
            "mean_cer",
            "max_cer",
            "passed_ocr",
        ]
        print(
            "\nStimulus checks per demo video and variant (PSNR vs baseline inside protected regions; OCR CER vs baseline)"
        )
        print(
            table[[c for c in columns if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.2f}")
        )
        failed = table[~(table["passed_psnr"] & table["passed_ocr"])]
        print(
            f"\n{len(table)} variant rows, {len(failed)} failing; check seconds per video: "
            f"{table.groupby('video_id')['check_s'].first().round(1).to_dict()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
