"""One realistic-size demo ad (1080x1920, 30 fps, 20 s by default), rendered in flat memory.

The procedural demo ads (:mod:`align_demo.corpus`) are 288x512 at 12 fps so the whole demo runs
in minutes; real short-video ads are 1080x1920 at 30 fps. This module renders one ad at real
size with what the platform checks on a real ad:

- a product (a drawn silhouette whose keyword occurs in the real keyword file) that moves, leaves
  the frame in one scene, is absent for a whole scene, and enters again;
- hard scene cuts every ~5 s (the scene rows give them, as in the research data);
- the overlays of a real ad: a caption at the top, a ``$24.99`` price tag and a ``SHOP NOW``
  call-to-action banner, in a font and size PP-OCRv4 (the protected-regions stage) reads;
- a mono AAC soundtrack whose chord changes at every cut;
- the exact product mask (product raster minus every pixel an overlay touched), stored per frame
  bit-packed and deflated (:class:`~align_core.io.frames.MaskFrames`, the provided-mask file layout
  the platform reads), so a 60 s ad's mask is a few MB and never a dense ``(T, H, W)`` stack.

It streams: one frame is drawn, measured (centre-bias attention proxy, luma contrast and
brightness, as in the demo corpus), its mask packed, the frame encoded, and dropped; memory is
one frame plus one scene's background canvas, whatever the length.

:func:`render_real_size_ad` renders into a demo layout and returns the same per-scene record the
demo corpus renders (its ``generate_demo_corpus(real_size_ads=1)`` attaches the planted outcomes
and writes the ad's CSV rows with the others). :func:`write_real_size_ad` writes a layout that
holds only that one ad (the real-size benchmark, ``bench/bench_real_size.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from align_core.io.arrays import save_npz_atomic
from align_core.io.frames import MaskFrames
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter
from align_demo.corpus import (
    AUDIO_RATE,
    BACKGROUND_KINDS,
    FrameMeasures,
    ProductLook,
    Rendered,
    SceneLayers,
    SceneOverlays,
    alignment_csv,
    attach_outcomes,
    keywords_csv,
    product_colours,
    scene_palettes,
    soundtrack,
)
from align_demo.corpus import background_frame as _demo_background

__all__ = [
    "CALL_TO_ACTION",
    "PRESENCE_CYCLE",
    "PRICE",
    "SCENE_S",
    "check_real_size_arguments",
    "render_real_size_ad",
    "write_real_size_ad",
]

#: Real short-video ad geometry (9:16), the defaults of the demo's realistic-size ad.
REAL_SIZE_WIDTH, REAL_SIZE_HEIGHT, REAL_SIZE_FPS = 1080, 1920, 30
REAL_SIZE_SECONDS = 20.0
#: About one cut every 5 s (at least 3 scenes: the product needs a scene to be absent in).
SCENE_S = 5.0
#: Scene by scene: shown, leaves the frame, absent, comes back; repeated for longer ads.
PRESENCE_CYCLE: tuple[str, ...] = ("full", "exit", "absent", "enter")
PRICE = "$24.99"
CALL_TO_ACTION = "SHOP NOW"
#: The call-to-action banner's colour (RGB).
_BANNER = (235.0, 40.0, 70.0)
_TOP_CAPTIONS: tuple[str, ...] = ("BEST SELLER", "LIMITED OFFER", f"ONLY {PRICE}", "NEW DROP")
#: Default ad of :func:`write_real_size_ad` (a keyword of the real keyword file, and its industry).
DEFAULT_KEYWORD, DEFAULT_INDUSTRY, DEFAULT_PRODUCT_KIND = "perfume", "Beauty", "bottle"
DEFAULT_VIDEO_ID = "realsize-ad"


def check_real_size_arguments(seconds: float, width: int, height: int, fps: float) -> None:
    """Reject sizes H.264 cannot hold and ads too short for three scenes (naming the value)."""
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"real-size ad frame size {width}x{height}: width and height must be even and at least 64")
    if not 6 <= fps <= 60:
        raise ValueError(f"real-size ad fps {fps} is outside 6-60")
    if not seconds > 0 or round(seconds * fps) < 9:
        raise ValueError(f"real-size ad of {seconds} s at {fps} fps: needs at least 9 frames (3 scenes of 3)")


def scene_bounds(n_frames: int, fps: float) -> list[int]:
    """Frame boundaries ``[0, ..., n_frames]`` of equal scenes of about :data:`SCENE_S` (at least 3)."""
    n_scenes = max(3, int(round(n_frames / (SCENE_S * fps))))
    return [int(round(i * n_frames / n_scenes)) for i in range(n_scenes + 1)]


def overlay_texts(keyword: str, n_scenes: int) -> list[tuple[str, str, str]]:
    """(top caption, bottom call-to-action banner, price tag or "") per scene."""
    title = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in keyword.upper()) or "NEW DROP"
    out = []
    for scene in range(n_scenes):
        top = title if scene == 0 else _TOP_CAPTIONS[(scene - 1) % len(_TOP_CAPTIONS)]
        out.append((top, CALL_TO_ACTION, PRICE if scene >= 1 else ""))
    return out


def render_real_size_ad(
    layout: DataLayout,
    video_id: str,
    keyword: str,
    industry: str,
    product_kind: str,
    rng: np.random.Generator,
    seconds: float = REAL_SIZE_SECONDS,
    width: int = REAL_SIZE_WIDTH,
    height: int = REAL_SIZE_HEIGHT,
    fps: float = REAL_SIZE_FPS,
) -> Rendered:
    """Render the ad into ``raw/videos/<id>.mp4`` and ``raw/masks/<id>.npz``, frame by frame.

    Returns the demo corpus's per-video render record (scene bounds, presences, measured scene
    statistics); the caller attaches outcomes and writes the CSV rows.
    """
    check_real_size_arguments(seconds, width, height, fps)
    W, H = int(width), int(height)
    n_frames = int(round(seconds * fps))
    bounds = scene_bounds(n_frames, fps)
    n_scenes = len(bounds) - 1
    presences = [PRESENCE_CYCLE[s % len(PRESENCE_CYCLE)] for s in range(n_scenes)]
    order = rng.permutation(len(BACKGROUND_KINDS))
    backgrounds = [BACKGROUND_KINDS[int(order[s % len(order)])] for s in range(n_scenes)]
    palettes = scene_palettes(rng, n_scenes)
    product = ProductLook.make(product_kind, product_colours(rng), H)
    texts = overlay_texts(keyword, n_scenes)
    audio = soundtrack(rng, bounds, fps)

    masks = MaskFrames(H, W)
    measures = FrameMeasures(n_frames, H, W)
    path = layout.videos_dir / f"{video_id}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A faster x264 preset at real size: the generator's time is mostly encoding.
    preset = "ultrafast" if W * H > 1_000_000 else "veryfast"
    with VideoWriter(path, fps, audio_pcm=(audio, AUDIO_RATE), preset=preset) as writer:
        for s in range(n_scenes):
            length = bounds[s + 1] - bounds[s]
            layers = SceneLayers.draw(
                rng,
                _capped_pan(rng, length, W, H),
                length,
                (W, H),
                backgrounds[s],
                palettes[s],
                product,
                presences[s],
                draw_background=_background,
            )
            overlays = SceneOverlays(*texts[s], _BANNER, (int(0.72 * W), int(0.62 * H), int(length * 0.3)))
            _stream_scene(writer, layers, overlays, range(bounds[s], bounds[s + 1]), masks, measures)
            del layers  # one scene's canvas in memory at a time
    mask_path = save_npz_atomic(layout.provided_mask_path(video_id), **masks.to_arrays("mask"))
    return Rendered(
        video_id,
        path,
        mask_path,
        keyword,
        "product",
        industry,
        product_kind,
        product.mean_rgb,
        W,
        H,
        float(fps),
        n_frames,
        bounds,
        backgrounds,
        presences,
        measures.scene_stats(bounds),
    )


def _capped_pan(rng: np.random.Generator, length: int, W: int, H: int) -> np.ndarray:
    """A random pan (pixels per frame), capped so one scene's canvas stays within ~15% of the frame per side."""
    return rng.uniform(-1.0, 1.0, size=2) * np.minimum(1.5 * W / 288, 0.15 * np.array([W, H]) / max(length, 1))


def _stream_scene(
    writer: VideoWriter,
    layers: SceneLayers,
    overlays: SceneOverlays,
    frames: range,
    masks: MaskFrames,
    measures: FrameMeasures,
) -> None:
    """Draw, measure, pack the mask of and encode each frame of one scene, one frame in memory at a time."""
    product = np.zeros((masks.height, masks.width), dtype=bool)
    for index in frames:
        product[:] = False
        frame = layers.frame(index - frames.start, product, overlays)
        masks.append(product)
        measures.record(index, frame, product)
        writer.write(frame)


def _background(kind: str, rng: np.random.Generator, h: int, w: int, palette: list[np.ndarray]) -> np.ndarray:
    """The demo's scene background, drawn at a quarter of the size and upscaled.

    Drawing a 1080x1920 canvas with the demo's float32 grids costs ~0.5 GB and seconds per scene;
    at a quarter size it is ~30 MB and the textures keep their look (edges soften slightly, as
    in a real out-of-focus background).
    """
    factor = 4 if w * h > 1_000_000 else 1
    if factor == 1:
        return _demo_background(kind, rng, h, w, palette)
    small = _demo_background(kind, rng, max(8, h // factor), max(8, w // factor), palette)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def write_real_size_ad(
    root: Path,
    seconds: float,
    width: int = REAL_SIZE_WIDTH,
    height: int = REAL_SIZE_HEIGHT,
    fps: float = REAL_SIZE_FPS,
    seed: int = 7,
    video_id: str = DEFAULT_VIDEO_ID,
) -> dict[str, Any]:
    """A layout holding only this one ad: video, provided mask and both CSVs (overwritten).

    For the real-size benchmark. Returns what was written (frames, scenes, bytes, generate time).
    """
    from align_core.io.atomic import atomic_write_text

    layout = DataLayout(Path(root)).ensure()
    started = time.perf_counter()
    rendered = render_real_size_ad(
        layout,
        video_id,
        DEFAULT_KEYWORD,
        DEFAULT_INDUSTRY,
        DEFAULT_PRODUCT_KIND,
        np.random.default_rng(np.random.SeedSequence([seed, 3, 0])),
        seconds=seconds,
        width=width,
        height=height,
        fps=fps,
    )
    generate_s = time.perf_counter() - started
    contrasts = np.array([s["contrast"] for s in rendered.scene_stats])
    video = attach_outcomes(
        rendered,
        False,
        float(contrasts.mean()),
        float(contrasts.std()) or 1.0,
        np.random.default_rng(np.random.SeedSequence([seed, 5, 0])),
    )
    atomic_write_text(layout.alignment_csv, alignment_csv([video]))
    atomic_write_text(layout.keywords_csv, keywords_csv([video], []))
    with np.load(rendered.mask_path) as data:
        coverage = np.asarray(data["mask_coverage"])
    return {
        "video_id": video_id,
        "frames": rendered.n_frames,
        "scenes": len(rendered.bounds) - 1,
        "video_bytes": rendered.path.stat().st_size,
        "mask_bytes": rendered.mask_path.stat().st_size,
        "generate_s": generate_s,
        "frames_with_product": int((coverage > 0).sum()),
    }
