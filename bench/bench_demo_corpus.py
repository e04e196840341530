"""Time and peak memory of the demo corpus generator at two frame sizes and two video lengths.

Each configuration runs in a fresh subprocess so ``ru_maxrss`` (the process's peak resident
set) belongs to that configuration alone; the RSS after imports is printed beside it so the
generator's own share is visible. Usage::

    .venv/bin/python bench/bench_demo_corpus.py [n_videos]   # default 6
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
from align_demo.corpus import generate_demo_corpus
n, width, height, low, high = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with tempfile.TemporaryDirectory() as root:
    start = time.perf_counter()
    screened = 1 if n >= 3 else 0  # one empty and one call-to-action keyword when there is room
    corpus = generate_demo_corpus(Path(root), n_videos=n, width=width, height=height, duration_range_s=(low, high),
                                  n_empty_keywords=screened, n_cta_keywords=screened)
    seconds = time.perf_counter() - start
    frames = sum(v.n_frames for v in corpus.videos)
    video_mb = sum(v.path.stat().st_size for v in corpus.videos) / 1e6
    mask_kb = sum(v.mask_path.stat().st_size for v in corpus.videos) / 1e3
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "frames": frames, "peak_rss_mb": peak, "import_rss_mb": base,
                  "video_mb": video_mb, "mask_kb": mask_kb}))
"""


def run(n_videos: int, width: int, height: int, duration: tuple[float, float]) -> dict[str, float]:
    """Generate one corpus in a child process and return its measurements."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n_videos), str(width), str(height), str(duration[0]), str(duration[1])],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child for {n_videos} videos at {width}x{height} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    configs = [
        (n, 288, 512, (4.0, 10.0)),
        (n, 432, 768, (4.0, 10.0)),
        (1, 288, 512, (4.0, 4.0)),
        (1, 288, 512, (10.0, 10.0)),
    ]
    print(
        f"{'videos':>6} {'size':>8} {'dur s':>9} {'frames':>6} {'time s':>7} {'ms/frame':>8} "
        f"{'peak MB':>8} {'import MB':>9} {'mp4 MB':>7} {'masks kB':>8}"
    )
    for count, width, height, duration in configs:
        r = run(count, width, height, duration)
        print(
            f"{count:>6} {width}x{height:<4} {duration[0]:>4.0f}-{duration[1]:<4.0f} {r['frames']:>6} "
            f"{r['seconds']:>7.2f} {1000 * r['seconds'] / r['frames']:>8.1f} {r['peak_rss_mb']:>8.0f} "
            f"{r['import_rss_mb']:>9.0f} {r['video_mb']:>7.2f} {r['mask_kb']:>8.1f}"
        )


if __name__ == "__main__":
    main()
