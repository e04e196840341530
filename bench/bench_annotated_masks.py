"""Annotated masks (GrabCut at the box's scale + DIS flow carry): IoU, time per frame, peak memory.

For every rendered demo ad, one box per scene is drawn around the true mask at the scene frame
where the product is largest (what an annotator would pick), and the carried masks are compared
with the exact masks on EVERY frame. The real clips use the demo's shipped boxes
(``REAL_CLIP_ANNOTATIONS``; no truth, so no IoU, only the asset checks). Every clip is
also measured upscaled to 1080x1920 (its first 48 frames, boxes scaled) for the real ad size. Each measurement
runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own. Usage::

    .venv/bin/python -m bench.bench_annotated_masks [--videos 6] [--data-dir DIR] [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _measure(spec: dict) -> dict:
    """Child process: segment one video from its annotations, compare with truth when there is one."""
    import resource
    import time

    import numpy as np

    from align_core.inputs.annotations import AnnotationRow, write_annotations
    from align_core.io.arrays import load_mask_stack
    from align_core.io.video_io import probe_video
    from align_core.perception.annotated_masks import AnnotatedSegmenter
    from align_core.perception.masks import segment_video

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    video = Path(spec["video"])
    rows = [
        AnnotationRow(0, "v", "box", None, f, float(x), float(y), float(w), float(h)) for f, x, y, w, h in spec["boxes"]
    ]
    csv_path = Path(spec["csv"])
    csv_path.unlink(missing_ok=True)
    write_annotations(csv_path, rows)
    probe = probe_video(video)
    segmenter = AnnotatedSegmenter("v", spec["ranges"], annotations_csv=csv_path)
    start = time.perf_counter()
    result = segment_video(video, "product", segmenter, probe=probe)
    seconds = time.perf_counter() - start
    out = {
        "size": f"{probe.width}x{probe.height}",
        "frames": probe.frame_count,
        "ms_per_frame": 1000 * seconds / probe.frame_count,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": base,
        "failed_checks": {c.name: c.failing_frames[:12] for c in segmenter.checks() if not c.passed},
        "annotated_frames": len(spec["boxes"]),
    }
    if spec.get("truth"):
        truth = load_mask_stack(spec["truth"])
        if spec.get("scale", 1) != 1:
            import cv2

            truth = np.stack(
                [
                    cv2.resize(t.astype(np.uint8), (probe.width, probe.height), interpolation=cv2.INTER_NEAREST) > 0
                    for t in truth[: probe.frame_count]
                ]
            )
        masks = result.masks
        inter = (masks & truth).reshape(len(masks), -1).sum(1)
        union = (masks | truth).reshape(len(masks), -1).sum(1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        out.update(
            {"iou_min": float(iou.min()), "iou_mean": float(iou.mean()), "frames_below_0_8": int((iou < 0.8).sum())}
        )
    return out


def _child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_annotated_masks", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed for {spec['video']}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _boxes_from_truth(truth, ranges) -> list[tuple[int, int, int, int, int]]:
    import numpy as np

    boxes = []
    for start, stop in ranges:
        areas = truth[start:stop].reshape(stop - start, -1).sum(1)
        if areas.max() == 0:
            continue
        frame = start + int(np.argmax(areas))
        ys, xs = np.nonzero(truth[frame])
        boxes.append(
            (frame, int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max() - xs.min()) + 5, int(ys.max() - ys.min()) + 5)
        )
    return boxes


def _upscaled(video: Path, out: Path, frames: int, size: tuple[int, int]) -> float:
    import cv2

    from align_core.io.video_io import VideoWriter, iter_frames, probe_video

    probe = probe_video(video)
    with VideoWriter(out, probe.fps) as writer:
        for frame in iter_frames(video, 0, frames):
            writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC))
    return size[0] / probe.width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--data-dir", default=None, help="an existing demo corpus (default: generate one)")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(json.loads(args.child))))
        return 0

    from align_core.inputs.scenes import detect_scenes
    from align_core.io.arrays import load_mask_stack
    from align_core.io.layout import DataLayout
    from align_core.io.video_io import probe_video
    from align_demo.corpus import REAL_CLIP_ANNOTATIONS, generate_demo_corpus

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layout = DataLayout(Path(args.data_dir) if args.data_dir else tmp / "corpus")
        if not (layout.raw_dir / "demo_corpus.json").exists():
            generate_demo_corpus(layout, n_videos=args.videos, seed=7)
        corpus = json.loads((layout.raw_dir / "demo_corpus.json").read_text())
        print(
            f"{'video':<28} {'size':>9} {'frames':>6} {'boxes':>5} {'IoU min':>8} {'IoU mean':>8} {'<0.8':>5} "
            f"{'ms/frame':>9} {'peak MB':>8}  failed checks (first frames)"
        )

        def show(name: str, r: dict) -> None:
            iou_min = f"{r['iou_min']:.3f}" if "iou_min" in r else "n/a"
            iou_mean = f"{r['iou_mean']:.3f}" if "iou_mean" in r else "n/a"
            below = str(r.get("frames_below_0_8", "n/a"))
            print(
                f"{name:<28} {r['size']:>9} {r['frames']:>6} {r['annotated_frames']:>5} {iou_min:>8} {iou_mean:>8} "
                f"{below:>5} {r['ms_per_frame']:>9.1f} {r['peak_rss_mb']:>8.0f}  {r['failed_checks'] or 'none'}",
                flush=True,
            )

        def at_real_size(name: str, spec: dict) -> None:
            """The same clip's first 48 frames upscaled to 1080x1920 (the real ad size), boxes scaled."""
            big = tmp / "big.mp4"
            frames = min(48, spec["ranges"][-1][1])
            scale_x = _upscaled(Path(spec["video"]), big, frames, (1080, 1920))
            scale_y = 1920 / probe_video(spec["video"]).height
            ranges = [(a, min(b, frames)) for a, b in spec["ranges"] if a < frames]
            boxes = [
                (f, round(x * scale_x), round(y * scale_y), round(w * scale_x), round(h * scale_y))
                for f, x, y, w, h in spec["boxes"]
                if f < frames
            ]
            if not boxes:
                return
            big_spec = {**spec, "video": str(big), "ranges": ranges, "boxes": boxes, "scale": scale_x}
            show(f"{name} @1080x1920", _child(big_spec))

        for entry in corpus["videos"]:
            truth_path = layout.root / entry["mask_path"]
            ranges = [(s["start_frame"], s["end_frame"]) for s in entry["scenes"]]
            boxes = _boxes_from_truth(load_mask_stack(truth_path), ranges)
            if not boxes:
                continue
            spec = {
                "video": str(layout.root / entry["path"]),
                "ranges": ranges,
                "boxes": boxes,
                "truth": str(truth_path),
                "csv": str(tmp / "annotations.csv"),
            }
            name = f"demo {entry['video_id'][-6:]} {entry['product_kind']}"
            show(name, _child(spec))
            at_real_size(name, spec)

        shared = Path(args.shared_data) / "videos"
        for stem, annotations in REAL_CLIP_ANNOTATIONS.items():
            path = next((p for p in shared.glob(f"{stem}.*")), None)
            if path is None:
                continue
            probe = probe_video(path)
            ranges = detect_scenes(path, probe.fps, probe.frame_count).frame_ranges()
            spec = {
                "video": str(path),
                "ranges": ranges,
                "boxes": [a[:5] for a in annotations],
                "csv": str(tmp / "annotations.csv"),
            }
            name = f"real {stem[:18]}"
            show(name, _child(spec))
            at_real_size(name, spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
