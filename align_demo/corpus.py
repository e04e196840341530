"""Deterministic procedural demo corpus: vertical video ads with known products and known effects.

The demo profile needs inputs that look like the research data (9:16 ads with hard scene cuts,
cluttered moving backgrounds, caption overlays, one product that moves and sometimes leaves the
frame, sound) but whose ground truth is known exactly, so every downstream stage can be checked
against it. :func:`generate_demo_corpus` writes, under a :class:`~align_core.io.layout.DataLayout`:

- ``raw/videos/<id>.mp4``: H.264 + AAC, default 288x512 at 12 fps, 4-10 s, 3-5 scenes with hard
  cuts (each scene a different background kind and palette, alternating dark/light).
- ``raw/masks/<id>.npz``: the exact per-frame product mask, ``bool (T, H, W)``.
- ``raw/alignment_score.csv`` and ``raw/keywords.csv`` in the real schemas.
- ``raw/demo_corpus.json``: this documentation in data form (every record, the attention proxy,
  the planted coefficients), for analysts who validate their estimates against the truth.

Ground-truth masks
    The product is rasterised without anti-aliasing (``cv2.LINE_8``), so its pixel set is exact.
    Caption overlays are drawn *after* the product and occlude it: the mask is the set of pixels
    showing the product's own colour, i.e. the product raster minus every pixel an overlay touched
    (anti-aliased text edges included). Moving distractor shapes are drawn *behind* the product.
    A product that is off-frame gives an empty mask; the scene plan makes every ad have at least
    one scene where the product is absent or enters/leaves the frame.

``attention_proportion`` (a documented proxy, not a viewer measurement)
    Per frame, the share of a centre-bias Gaussian attention map (sigma = 0.3 of width and of
    height, the centre-bias baseline of the design notes) that falls on the product mask:
    ``sum(G * M_t) / sum(G)``; the scene value is the mean over the scene's frames. It moves with
    the product's size and distance from the centre and is 0 while the product is absent.

``contrast`` and ``brightness``
    Measured on the rendered RGB frames before encoding, on BT.601 luma scaled to [0, 1]:
    brightness is the mean luma, contrast the RMS contrast (standard deviation of luma), each
    averaged over the scene's frames.

Planted engagement relation (one observation per scene row; ``z`` = contrast standardised over
all rendered demo scenes of the corpus, with the mean and sd stored in the JSON)::

    logit(CTR_mean) = -4.4 + ctr_industry[industry] + 1.2 * attention_proportion + 0.3 * z + e1
    logit(CVR_mean) = -3.0 + cvr_industry[industry] + 0.8 * attention_proportion + 0.1 * z + e2
    Clicks_mean     = CTR_mean * impressions            (impressions per video, log-normal)
    Conversion_mean = CVR_mean * Clicks_mean
    logit(Remain_mean) = 0.8 + 0.5 * attention_proportion - 1.0 * scene_position + e3

with ``scene_position = (scene_number - 1) / (n_scenes - 1)`` and independent normal noise
``e1, e2`` (sd 0.15) and ``e3`` (sd 0.1). :data:`PLANTED_RELATION` holds the exact numbers.

Keywords are sampled by seed from a curated list of product nouns that a drawn silhouette can
depict (bottle, box, shoe, jar, watch); when ``keywords_source`` names the real keyword file the
list is restricted to keywords that occur there. Every corpus also carries ``n_empty_keywords``
empty and ``n_cta_keywords`` call-to-action keywords (still rendered, with masks) so keyword
screening is exercised. By default one product-keyword video gets no rows in
``alignment_score.csv``, so the catalog has to find its scenes by cut detection.

Real clips (``include_real_clips=True``) are copied byte for byte (never re-encoded) as
``real-<stem>`` with a keyword, but with no scene rows and no masks: their ground truth is not
known. They have no audio track. Their product boxes (:data:`REAL_CLIP_ANNOTATIONS`) go to
``raw/annotations.csv``, so they are segmented by the ``annotated`` path.

Re-running with the same arguments rewrites byte-identical CSVs, masks and JSON, each replaced
atomically, and renders identical frames (the mp4 bytes can still differ slightly between runs,
because multithreaded libx264 encoding in ``video_io.VideoWriter`` is not bit-exact); videos and masks that an earlier demo corpus wrote into the same directory and that
the new one does not contain are removed (only ids listed in the earlier ``demo_corpus.json``).
"""

from __future__ import annotations

import colorsys
import copy
import csv
import io
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from align_core.inputs.ids import validate_video_id, video_id_from_filename
from align_core.io.arrays import save_mask_stack
from align_core.io.atomic import atomic_path, atomic_write_text
from align_core.io.layout import DataLayout
from align_core.io.video_io import VideoWriter
from align_demo.provenance import record_demo_inputs

__all__ = [
    "ALIGNMENT_COLUMNS",
    "AUDIO_RATE",
    "BACKGROUND_KINDS",
    "CTA_KEYWORDS",
    "DemoCorpus",
    "FrameMeasures",
    "INDUSTRIES",
    "KEYWORD_COLUMNS",
    "PLANTED_RELATION",
    "ProductLook",
    "REAL_CLIP_ANNOTATIONS",
    "Rendered",
    "SceneLayers",
    "SceneOverlays",
    "alignment_csv",
    "attach_outcomes",
    "background_frame",
    "centre_bias_weights",
    "draw_caption",
    "draw_distractor",
    "generate_demo_corpus",
    "keywords_csv",
    "make_distractors",
    "paste",
    "product_colours",
    "product_sprite",
    "product_track",
    "scene_palettes",
    "soundtrack",
]

#: Column names of ``alignment_score.csv`` in the research data, in order.
ALIGNMENT_COLUMNS: tuple[str, ...] = (
    "video id",
    "Scene Number",
    "attention_proportion",
    "start_time",
    "end_time",
    "CTR_mean",
    "CVR_mean",
    "Clicks_mean",
    "Conversion_mean",
    "Remain_mean",
    "contrast",
    "brightness",
    "industry",
)
#: Column names of ``keywords.csv`` in the research data, in order.
KEYWORD_COLUMNS: tuple[str, ...] = ("_id", "keyword_list[0]")

INDUSTRIES: tuple[str, ...] = (
    "Beauty",
    "Fashion",
    "Food & Beverage",
    "Electronics",
    "Home",
    "Health & Fitness",
    "Jewelry",
)

#: Product silhouettes, and keywords (all present in the real keyword file) with their industry.
PRODUCT_KEYWORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "bottle": (
        ("perfume", "Beauty"),
        ("fragrances", "Beauty"),
        ("pheromone perfume", "Beauty"),
        ("cologne", "Beauty"),
        ("serum", "Beauty"),
        ("shampoo", "Beauty"),
        ("sunscreen", "Beauty"),
        ("body lotion", "Beauty"),
        ("water bottle", "Health & Fitness"),
        ("energy drink", "Food & Beverage"),
        ("supplements", "Health & Fitness"),
    ),
    "box": (
        ("coffee", "Food & Beverage"),
        ("tea", "Food & Beverage"),
        ("cereal", "Food & Beverage"),
        ("smartphones", "Electronics"),
        ("headphones", "Electronics"),
        ("earbuds", "Electronics"),
        ("toy", "Home"),
        ("book", "Home"),
        ("protein powder", "Health & Fitness"),
    ),
    "shoe": (
        ("shoes", "Fashion"),
        ("sneakers", "Fashion"),
        ("sneaker", "Fashion"),
        ("boots", "Fashion"),
        ("slippers", "Fashion"),
        ("sandals", "Fashion"),
        ("running shoes", "Health & Fitness"),
    ),
    "jar": (
        ("cream", "Beauty"),
        ("face cream", "Beauty"),
        ("eye cream", "Beauty"),
        ("moisturizer", "Beauty"),
        ("foundation", "Beauty"),
        ("lip balm", "Beauty"),
        ("candle", "Home"),
        ("candles", "Home"),
        ("honey", "Food & Beverage"),
    ),
    "watch": (
        ("watch", "Jewelry"),
        ("watches", "Jewelry"),
        ("bracelet", "Jewelry"),
        ("smartwatch", "Electronics"),
        ("smart watch", "Electronics"),
    ),
}
PRODUCT_KINDS: tuple[str, ...] = tuple(PRODUCT_KEYWORDS)

#: Calls to action that name no visible object (all present in the real keyword file).
CTA_KEYWORDS: tuple[str, ...] = (
    "shop now",
    "free shipping",
    "get yours now",
    "get yours today",
    "buy now",
    "learn more",
    "order now",
    "swipe left",
    "click the link below",
)

#: Keywords for the real clips in ``shared/data/videos`` (by file stem); unknown stems get "".
REAL_CLIP_KEYWORDS: dict[str, str] = {
    "fruit-and-vegetable-detection": "fruit",
    "help": "hands",
    "intel_bottle-detection": "bottle",
}
DEFAULT_REAL_CLIPS: tuple[str, ...] = ("fruit-and-vegetable-detection.mp4", "help.mkv")
#: Product boxes for the real clips (by file stem): ``(frame, x, y, w, h, label)`` in video pixels,
#: written to ``raw/annotations.csv`` so the clips get ``annotated`` masks on a CPU. Drawn by hand
#: on a pixel grid: every fruit once where it is whole in view; the signer's hands where they rest
#: and where they sign (fast hand motion needs more than one box per scene).
REAL_CLIP_ANNOTATIONS: dict[str, tuple[tuple[int, int, int, int, int, str], ...]] = {
    "fruit-and-vegetable-detection": (
        (10, 324, 140, 66, 64, "apple"),
        (40, 45, 145, 165, 60, "broccoli"),
        (70, 216, 150, 117, 62, "cauliflower"),
        (100, 70, 134, 83, 79, "orange"),
    ),
    "help": (
        (0, 196, 395, 52, 85, "left hand"),
        (14, 272, 212, 146, 116, "hands"),
        (20, 272, 210, 140, 118, "hands"),
        (24, 268, 148, 132, 102, "hands"),
        (30, 268, 118, 120, 100, "hands"),
        (40, 268, 150, 132, 100, "hands"),
        (45, 248, 210, 125, 118, "hands"),
        (50, 196, 385, 64, 95, "left hand"),
        (50, 378, 395, 66, 85, "right hand"),
    ),
}

#: Faces in the real clips, protected in every variant (no packaged face detector installs here, so
#: the demo protects them the way a lab would: a row in ``raw/protect.csv``; format in
#: :mod:`align_core.perception.protect`): clip stem -> ((x0, y0, x1, y1, label), ...), every frame.
REAL_CLIP_PROTECT: dict[str, tuple[tuple[int, int, int, int, str], ...]] = {
    "help": ((284, 48, 384, 168, "face"),),
}

#: The true coefficients behind the engagement columns (see the module docstring).
PLANTED_RELATION: dict[str, Any] = {
    "unit": "one observation per alignment_score.csv row (a scene)",
    "ctr": {
        "link": "logit",
        "intercept": -4.4,
        "attention_proportion": 1.2,
        "contrast_z": 0.3,
        "noise_sd": 0.15,
        "industry": {
            "Beauty": 0.2,
            "Fashion": 0.1,
            "Food & Beverage": 0.0,
            "Electronics": -0.2,
            "Home": -0.1,
            "Health & Fitness": 0.05,
            "Jewelry": 0.15,
        },
    },
    "cvr": {
        "link": "logit",
        "intercept": -3.0,
        "attention_proportion": 0.8,
        "contrast_z": 0.1,
        "noise_sd": 0.15,
        "industry": {
            "Beauty": 0.1,
            "Fashion": -0.1,
            "Food & Beverage": 0.2,
            "Electronics": -0.3,
            "Home": 0.0,
            "Health & Fitness": 0.1,
            "Jewelry": -0.2,
        },
    },
    "remain": {
        "link": "logit",
        "intercept": 0.8,
        "attention_proportion": 0.5,
        "scene_position": -1.0,
        "noise_sd": 0.1,
        "scene_position_definition": "(scene_number - 1) / (n_scenes - 1), 0 for a single scene",
    },
    "clicks": "Clicks_mean = CTR_mean * impressions (impressions fixed per video)",
    "conversions": "Conversion_mean = CVR_mean * Clicks_mean",
    "impressions": {"distribution": "lognormal", "median": 20000, "log_sd": 0.3},
    "contrast_z": "(contrast - contrast_mean) / contrast_sd over all rendered demo scenes",
}

ATTENTION_PROXY: dict[str, Any] = {
    "name": "centre_bias_gaussian_share",
    "definition": "per frame sum(G * M_t) / sum(G), G = exp(-((x-cx)^2/(2(0.3W)^2) + (y-cy)^2/(2(0.3H)^2))) "
    "on pixel centres, M_t the ground-truth product mask; scene value = mean over its frames",
    "sigma_fraction": 0.3,
    "honesty": "a centre-bias proxy computed from the product mask, not a measurement of viewers",
}

AUDIO_RATE = 22050
#: Shortest scene: 1.25 s is 15 frames at 12 fps, PySceneDetect's default ``min_scene_len``,
#: so its content detector can find every cut of a video that has no scene rows.
_MIN_SCENE_S = 1.25
BACKGROUND_KINDS = ("gradient", "stripes", "noise", "clutter", "tiles")
_PRESENCES = ("full", "full", "full", "enter", "exit", "absent")
_FONT = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class DemoScene:
    """One rendered scene: frames ``[start_frame, end_frame)`` and what was measured on them."""

    scene_number: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    background: str
    product_presence: str  # full | enter | exit | absent
    attention_proportion: float
    contrast: float
    brightness: float
    ctr: float
    cvr: float
    clicks: float
    conversions: float
    remain: float


@dataclass(frozen=True)
class DemoVideo:
    """A rendered demo ad and its ground truth (paths are absolute)."""

    video_id: str
    path: Path
    mask_path: Path
    keyword: str
    keyword_kind: str  # product | cta | empty
    industry: str
    product_kind: str
    product_mean_rgb: tuple[int, int, int]
    width: int
    height: int
    fps: float
    n_frames: int
    duration_s: float
    impressions: int
    has_scene_rows: bool
    scenes: tuple[DemoScene, ...]

    def to_dict(self, root: Path) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = self.path.relative_to(root).as_posix()
        out["mask_path"] = self.mask_path.relative_to(root).as_posix()
        out["product_mean_rgb"] = list(self.product_mean_rgb)
        out["scenes"] = [asdict(scene) for scene in self.scenes]
        return out


@dataclass(frozen=True)
class RealClip:
    """A real clip copied unchanged into the corpus: keyword only, no scene rows, no masks."""

    video_id: str
    path: Path
    source: Path
    keyword: str

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "path": self.path.relative_to(root).as_posix(),
            "source_name": self.source.name,
            "keyword": self.keyword,
            "has_scene_rows": False,
            "has_mask": False,
            "has_audio": False,
        }


@dataclass(frozen=True)
class DemoCorpus:
    """Everything :func:`generate_demo_corpus` wrote, with the planted truth."""

    layout: DataLayout
    seed: int
    videos: tuple[DemoVideo, ...]
    real_clips: tuple[RealClip, ...]
    contrast_mean: float
    contrast_sd: float
    json_path: Path
    relation: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(PLANTED_RELATION))
    #: Realistic-size ads (:mod:`align_demo.real_size`), listed apart: other frame size and fps,
    #: and their masks are stored per frame (``MaskFrames``), not as one bit-packed stack.
    real_size_videos: tuple[DemoVideo, ...] = ()

    @property
    def video_ids(self) -> list[str]:
        return (
            [v.video_id for v in self.videos]
            + [v.video_id for v in self.real_size_videos]
            + [c.video_id for c in self.real_clips]
        )

    def video(self, video_id: str) -> DemoVideo:
        for video in self.videos + self.real_size_videos:
            if video.video_id == video_id:
                return video
        raise KeyError(f"demo corpus in {self.layout.root} has no rendered video {video_id!r}")


# -- public helpers ------------------------------------------------------------------------------
def centre_bias_weights(height: int, width: int, sigma_fraction: float = 0.3) -> np.ndarray:
    """The centre-bias Gaussian behind ``attention_proportion``, ``float64 (H, W)``, peak 1."""
    ys = (np.arange(height) + 0.5 - height / 2.0) / (sigma_fraction * height)
    xs = (np.arange(width) + 0.5 - width / 2.0) / (sigma_fraction * width)
    return np.exp(-0.5 * ys[:, None] ** 2) * np.exp(-0.5 * xs[None, :] ** 2)


def generate_demo_corpus(
    layout_or_root: DataLayout | Path,
    n_videos: int = 6,
    seed: int = 7,
    keywords_source: Path | None = None,
    width: int = 288,
    height: int = 512,
    fps: float = 12,
    *,
    videos_without_scene_rows: int = 1,
    n_empty_keywords: int = 1,
    n_cta_keywords: int = 1,
    duration_range_s: tuple[float, float] = (4.0, 10.0),
    include_real_clips: bool = False,
    real_clips_dir: Path | None = None,
    real_clip_names: Sequence[str] = DEFAULT_REAL_CLIPS,
    real_size_ads: int = 0,
    real_size_seconds: float = 20.0,
    real_size_frame: tuple[int, int] = (1080, 1920),
    real_size_fps: float = 30,
) -> DemoCorpus:
    """Render ``n_videos`` demo ads (deterministic by ``seed``) and their metadata into the layout.

    ``keywords_source`` is the real ``keywords.csv``: keywords are then drawn only from those that
    occur in it, and generated ids avoid its ids. ``real_clips_dir`` defaults to the ``videos``
    folder beside ``keywords_source``.

    ``real_size_ads`` adds that many realistic-size ads (:mod:`align_demo.real_size`:
    ``real_size_frame`` (width, height) at ``real_size_fps``, ``real_size_seconds`` long, streamed
    in flat memory). Each is a product ad in an industry the standard ads' experiment already
    has, so it joins the simulated A/B test when its variants pass their checks. The standard
    ads' files and rows do not change when it is added (its own seed stream; the contrast
    standardisation stays that of the standard ads and is applied to it too).
    """
    layout = layout_or_root if isinstance(layout_or_root, DataLayout) else DataLayout(Path(layout_or_root))
    _check_arguments(
        n_videos, width, height, fps, videos_without_scene_rows, n_empty_keywords, n_cta_keywords, duration_range_s
    )
    _check_real_size_request(real_size_ads, real_size_seconds, real_size_frame, real_size_fps)
    vocabulary = _Vocabulary.load(keywords_source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    ids = _make_ids(rng, n_videos, vocabulary.real_ids)
    plans = _plan_keywords(rng, n_videos, n_empty_keywords, n_cta_keywords, vocabulary)
    no_rows = _pick_videos_without_rows(rng, plans, videos_without_scene_rows)

    layout.videos_dir.mkdir(parents=True, exist_ok=True)
    layout.masks_dir.mkdir(parents=True, exist_ok=True)
    rendered = _render_standard_videos(layout, seed, ids, plans, width, height, fps, duration_range_s)
    contrast_mean, contrast_sd = _contrast_standardisation(rendered)
    videos = _attach_standard_outcomes(rendered, no_rows, seed, contrast_mean, contrast_sd)
    real_size_videos = _render_real_size_ads(
        layout,
        real_size_ads,
        seed,
        plans,
        ids,
        vocabulary,
        real_size_seconds,
        real_size_frame,
        real_size_fps,
        contrast_mean,
        contrast_sd,
    )
    real_clips = (
        _copy_real_clips(layout, real_clips_dir, keywords_source, real_clip_names) if include_real_clips else ()
    )
    corpus = DemoCorpus(
        layout=layout,
        seed=seed,
        videos=videos,
        real_clips=real_clips,
        contrast_mean=_r6(contrast_mean),
        contrast_sd=_r6(contrast_sd),
        json_path=layout.raw_dir / "demo_corpus.json",
        real_size_videos=real_size_videos,
    )
    _write_corpus_files(corpus, width, height, fps, keywords_source)
    record_demo_inputs(layout)  # this directory is the demo's: only here may simulated results appear
    return corpus


def _check_real_size_request(count: int, seconds: float, frame: tuple[int, int], fps: float) -> None:
    """Reject a bad realistic-size request before anything is rendered."""
    if count < 0:
        raise ValueError(f"real_size_ads={count} must be 0 or more")
    if count:
        from align_demo.real_size import check_real_size_arguments

        check_real_size_arguments(seconds, frame[0], frame[1], fps)


def _pick_videos_without_rows(rng: np.random.Generator, plans: list[tuple[str, str, str, str]], count: int) -> set[int]:
    """The video slots that get no scene rows, so the catalog must find their scenes by cut detection.

    Industry comes from the scene rows, so screened (never edited) ads lose theirs first: the
    edited ads keep their industry pairs for the A/B experiment.
    """
    product_slots = [i for i, plan in enumerate(plans) if plan[0] == "product"]
    other_slots = [i for i in range(len(plans)) if i not in product_slots]
    no_rows = set(rng.permutation(other_slots).tolist()[:count])
    for slot in rng.permutation(product_slots).tolist():
        if len(no_rows) < count:
            no_rows.add(slot)
    return no_rows


def _render_standard_videos(
    layout: DataLayout,
    seed: int,
    ids: list[str],
    plans: list[tuple[str, str, str, str]],
    width: int,
    height: int,
    fps: float,
    duration_range_s: tuple[float, float],
) -> list[Rendered]:
    """Render one standard ad per keyword plan, each from its own seed stream."""
    return [
        _render_video(
            layout,
            ids[index],
            keyword,
            kind,
            industry,
            product_kind,
            width,
            height,
            fps,
            duration_range_s,
            np.random.default_rng(np.random.SeedSequence([seed, 1, index])),
        )
        for index, (kind, keyword, industry, product_kind) in enumerate(plans)
    ]


def _attach_standard_outcomes(
    rendered: Sequence[Rendered], no_rows: set[int], seed: int, contrast_mean: float, contrast_sd: float
) -> tuple[DemoVideo, ...]:
    """The standard ads with their planted outcomes (none written for the ``no_rows`` slots)."""
    return tuple(
        attach_outcomes(
            r,
            index in no_rows,
            contrast_mean,
            contrast_sd,
            np.random.default_rng(np.random.SeedSequence([seed, 2, index])),
        )
        for index, r in enumerate(rendered)
    )


def _contrast_standardisation(rendered: Sequence[Rendered]) -> tuple[float, float]:
    """Mean and sd of every rendered scene's contrast (the ``z`` of the planted relation)."""
    contrasts = np.array([s["contrast"] for r in rendered for s in r.scene_stats])
    return float(contrasts.mean()), float(contrasts.std()) or 1.0


def _copy_real_clips(
    layout: DataLayout, real_clips_dir: Path | None, keywords_source: Path | None, names: Sequence[str]
) -> tuple[RealClip, ...]:
    """Copy the named real clips from ``real_clips_dir`` (default: ``videos`` beside the keywords)."""
    source_dir = real_clips_dir
    if source_dir is None:
        if keywords_source is None:
            raise ValueError(
                "include_real_clips=True needs real_clips_dir or keywords_source "
                "(the clips are read from the 'videos' folder beside it)"
            )
        source_dir = Path(keywords_source).parent / "videos"
    return tuple(_copy_real_clip(layout, Path(source_dir), name) for name in names)


def _write_corpus_files(corpus: DemoCorpus, width: int, height: int, fps: float, keywords_source: Path | None) -> None:
    """Drop an earlier corpus's leftovers, then write the CSVs and the JSON that describe this one."""
    layout, real_clips = corpus.layout, corpus.real_clips
    rendered = corpus.videos + corpus.real_size_videos
    _remove_stale(layout, {v.video_id for v in rendered} | {c.video_id for c in real_clips})
    _write_real_clip_annotations(layout, real_clips)
    _write_real_clip_protect(layout, real_clips)
    atomic_write_text(layout.alignment_csv, alignment_csv(rendered))
    atomic_write_text(layout.keywords_csv, keywords_csv(rendered, real_clips))
    atomic_write_text(corpus.json_path, _corpus_json(corpus, width, height, fps, keywords_source))


def _render_real_size_ads(
    layout: DataLayout,
    count: int,
    seed: int,
    plans: list[tuple[str, str, str, str]],
    taken: list[str],
    vocabulary: _Vocabulary,
    seconds: float,
    frame: tuple[int, int],
    fps: float,
    contrast_mean: float,
    contrast_sd: float,
) -> tuple[DemoVideo, ...]:
    """Render ``count`` realistic-size product ads and attach the planted outcomes to their scenes.

    Each takes the industry of a standard product ad (in turn), so the simulated A/B experiment
    compares no industry that has a single video; its keyword is one of that industry's.
    """
    if count == 0:
        return ()
    from align_demo.real_size import render_real_size_ad

    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    ids = _make_ids(rng, count, vocabulary.real_ids | frozenset(taken))
    industries = [industry for kind, _, industry, _ in plans if kind == "product"]
    if not industries:
        industries = [next(industry for pairs in vocabulary.products.values() for _, industry in pairs)]
    out = []
    for index in range(count):
        industry = industries[(2 * index) % len(industries)]
        choices = [
            (kind, keyword) for kind, pairs in vocabulary.products.items() for keyword, ind in pairs if ind == industry
        ]
        product_kind, keyword = choices[int(rng.integers(len(choices)))]
        video_rng = np.random.default_rng(np.random.SeedSequence([seed, 4, index]))
        rendered = render_real_size_ad(
            layout,
            ids[index],
            keyword,
            industry,
            product_kind,
            video_rng,
            seconds=seconds,
            width=frame[0],
            height=frame[1],
            fps=fps,
        )
        out.append(
            attach_outcomes(
                rendered,
                False,
                contrast_mean,
                contrast_sd,
                np.random.default_rng(np.random.SeedSequence([seed, 5, index])),
            )
        )
    return tuple(out)


# -- arguments, ids and keywords -----------------------------------------------------------------
def _check_arguments(
    n_videos: int,
    width: int,
    height: int,
    fps: float,
    no_rows: int,
    n_empty: int,
    n_cta: int,
    duration_range_s: tuple[float, float],
) -> None:
    if n_videos < 1:
        raise ValueError(f"n_videos must be at least 1, got {n_videos}")
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(
            f"frame size {width}x{height}: width and height must be even and at least 64 "
            "(H.264 yuv420p needs even sizes)"
        )
    if not 6 <= fps <= 30:
        raise ValueError(f"fps {fps} is outside 6-30 (the demo profile uses 12-15)")
    if not 0 <= no_rows <= n_videos:
        raise ValueError(f"videos_without_scene_rows={no_rows} must be between 0 and n_videos={n_videos}")
    if n_empty < 0 or n_cta < 0 or n_empty + n_cta > n_videos:
        raise ValueError(
            f"n_empty_keywords={n_empty} + n_cta_keywords={n_cta} must be non-negative and at most n_videos={n_videos}"
        )
    low, high = duration_range_s
    if not 0 < low <= high:
        raise ValueError(f"duration_range_s={duration_range_s} must satisfy 0 < low <= high")
    if round(high * fps) < 3 * math.ceil(_MIN_SCENE_S * fps):
        raise ValueError(
            f"duration_range_s={duration_range_s}: {high} s is too short for 3 scenes of at least {_MIN_SCENE_S} s each"
        )


@dataclass(frozen=True)
class _Vocabulary:
    products: dict[str, tuple[tuple[str, str], ...]]
    ctas: tuple[str, ...]
    real_ids: frozenset[str]

    @classmethod
    def load(cls, source: Path | None) -> _Vocabulary:
        if source is None:
            return cls(dict(PRODUCT_KEYWORDS), CTA_KEYWORDS, frozenset())
        source = Path(source)
        try:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"keywords source {source}: cannot be read as CSV ({exc})") from exc
        missing = [c for c in KEYWORD_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"keywords source {source}: missing column(s) {missing}; has {list(frame.columns)}")
        present = set(frame["keyword_list[0]"].str.strip().str.lower())
        products = {kind: tuple(p for p in pairs if p[0] in present) for kind, pairs in PRODUCT_KEYWORDS.items()}
        products = {kind: pairs for kind, pairs in products.items() if pairs}
        if not products:
            raise ValueError(
                f"keywords source {source}: none of the demo product keywords occur in it "
                f"(looked for e.g. {[p[0] for p in PRODUCT_KEYWORDS['shoe']]})"
            )
        ctas = tuple(k for k in CTA_KEYWORDS if k in present) or CTA_KEYWORDS
        return cls(products, ctas, frozenset(frame["_id"]))


def _make_ids(rng: np.random.Generator, n: int, avoid: frozenset[str]) -> list[str]:
    """Distinct 19-digit ids starting with 72, like TikTok's, avoiding the real file's ids."""
    ids: list[str] = []
    while len(ids) < n:
        candidate = str(int(rng.integers(7_200_000_000_000_000_000, 7_300_000_000_000_000_000, dtype=np.int64)))
        if candidate not in avoid and candidate not in ids:
            ids.append(validate_video_id(candidate))
    return ids


def _plan_keywords(
    rng: np.random.Generator, n: int, n_empty: int, n_cta: int, vocabulary: _Vocabulary
) -> list[tuple[str, str, str, str]]:
    """Per video: (keyword kind, keyword, industry, product silhouette)."""
    kinds = ["empty"] * n_empty + ["cta"] * n_cta + ["product"] * (n - n_empty - n_cta)
    kinds = [kinds[i] for i in rng.permutation(n)]
    available = list(vocabulary.products)
    order = [available[i] for i in rng.permutation(len(available))]
    # Product ads come in pairs per industry, so the demo's A/B experiment has at least two videos
    # in each industry it compares (the heterogeneity section needs them).
    by_industry: dict[str, list[tuple[str, str]]] = {}
    for product_kind in order:
        for keyword, industry in vocabulary.products[product_kind]:
            by_industry.setdefault(industry, []).append((product_kind, keyword))
    industry_order = [k for k in INDUSTRIES if k in by_industry]
    industry_order = [industry_order[i] for i in rng.permutation(len(industry_order))]
    plans = []
    product_count = 0
    for index, kind in enumerate(kinds):
        product_kind = order[index % len(order)]
        if kind == "product":
            industry = industry_order[(product_count // 2) % len(industry_order)]
            product_count += 1
            product_kind, keyword = by_industry[industry][int(rng.integers(len(by_industry[industry])))]
        else:
            keyword = "" if kind == "empty" else vocabulary.ctas[int(rng.integers(len(vocabulary.ctas)))]
            industry = INDUSTRIES[int(rng.integers(len(INDUSTRIES)))]
        plans.append((kind, keyword, industry, product_kind))
    return plans


# -- rendering -----------------------------------------------------------------------------------
@dataclass
class Rendered:
    video_id: str
    path: Path
    mask_path: Path
    keyword: str
    keyword_kind: str
    industry: str
    product_kind: str
    product_mean_rgb: tuple[int, int, int]
    width: int
    height: int
    fps: float
    n_frames: int
    bounds: list[int]
    backgrounds: list[str]
    presences: list[str]
    scene_stats: list[dict[str, float]]


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _scene_bounds(rng: np.random.Generator, fps: float, duration_range_s: tuple[float, float]) -> list[int]:
    """Frame boundaries ``[0, f_1, ..., T]`` of 3-5 scenes, none shorter than ``_MIN_SCENE_S``."""
    min_len = math.ceil(_MIN_SCENE_S * fps)
    low = max(int(round(duration_range_s[0] * fps)), 3 * min_len)
    high = max(low, int(round(duration_range_s[1] * fps)))
    n_frames = int(rng.integers(low, high + 1))
    n_scenes = int(rng.integers(3, min(5, n_frames // min_len) + 1))
    spare = n_frames - n_scenes * min_len
    shares = rng.dirichlet(np.full(n_scenes, 2.0)) * spare
    lengths = np.full(n_scenes, min_len) + np.floor(shares).astype(int)
    lengths[-1] += n_frames - int(lengths.sum())
    return [0] + np.cumsum(lengths).astype(int).tolist()


def background_frame(kind: str, rng: np.random.Generator, h: int, w: int, palette: list[np.ndarray]) -> np.ndarray:
    """A scene background canvas ``uint8 (h, w, 3)`` of the given kind (vectorised)."""
    c1, c2, c3 = palette
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    soft = cv2.resize(
        rng.random((max(2, h // 32), max(2, w // 32))).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )[..., None]
    if kind == "gradient":
        angle = rng.uniform(0, math.pi)
        t = xs * math.cos(angle) + ys * math.sin(angle)
        t = ((t - t.min()) / max(float(np.ptp(t)), 1.0))[..., None]
        img = c1 * (1 - t) + c2 * t + (soft - 0.5) * 30.0
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(18, 40) * w / 288
        s = np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
        t = np.clip(s * 3.0, -1, 1)[..., None] * 0.5 + 0.5
        img = c1 * (1 - t) + c2 * t + (soft - 0.5) * 20.0
    elif kind == "noise":
        cells = rng.random((max(2, h // 12), max(2, w // 12))).astype(np.float32)
        t = np.clip(cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)[..., None]
        img = c1 * (1 - t) + c2 * t + (soft - 0.5) * 60.0 * (c3 / 255.0 - 0.5)
    elif kind == "tiles":
        size = int(rng.integers(24, 49) * w / 288)
        checker = ((xs // size + ys // size) % 2)[..., None]
        grout = (((xs % size) < 2) | ((ys % size) < 2))[..., None]
        img = np.where(grout, c3 * 0.5, c1 * (1 - checker) + c2 * checker) + (soft - 0.5) * 20.0
    else:  # clutter: static shapes on a base colour, like a shelf or a messy room
        img = np.broadcast_to(c1, (h, w, 3)) + (soft - 0.5) * 30.0
        img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
        for _ in range(int(rng.integers(25, 41))):
            colour = (c2 if rng.random() < 0.5 else c3) * rng.uniform(0.7, 1.15)
            colour = tuple(float(c) for c in np.clip(colour, 0, 255))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            size = int(rng.integers(6, 36) * w / 288)
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), size, colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        return img
    return np.clip(img, 0, 255).astype(np.uint8)


def scene_palettes(rng: np.random.Generator, n: int) -> list[list[np.ndarray]]:
    """Palettes whose hue jumps by at least a quarter turn and whose value alternates dark/light."""
    hue = rng.random()
    light = bool(rng.random() < 0.5)
    out = []
    for _ in range(n):
        hue = (hue + rng.uniform(0.25, 0.75)) % 1.0
        light = not light
        v = rng.uniform(0.75, 0.95) if light else rng.uniform(0.18, 0.38)
        s = rng.uniform(0.35, 0.8)
        out.append(
            [_hsv(hue, s, v), _hsv(hue + 0.06, s * 0.8, v * 0.7 if light else v * 1.6), _hsv(hue + 0.5, 0.6, 0.6)]
        )
    return out


_Colour = tuple[float, ...]  # RGB, 0-255
#: Width / height of each product silhouette.
_SPRITE_ASPECTS = {"bottle": 0.42, "box": 0.95, "shoe": 2.0, "jar": 1.1, "watch": 0.6}


class _SpriteCanvas:
    """A product raster being drawn: colour and exact mask together, in coordinates 0-1 of the sprite."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), np.uint8)
        self.mask = np.zeros((h, w), np.uint8)
        self.xs = (np.arange(w, dtype=np.float32) + 0.5) / w
        self.ys = (np.arange(h, dtype=np.float32) + 0.5) / h

    def at(self, x: float, y: float) -> tuple[int, int]:
        return round(x * (self.w - 1)), round(y * (self.h - 1))

    def poly(self, points: list[tuple[float, float]], colour: _Colour) -> None:
        p = np.array([self.at(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.rgb, [p], colour, cv2.LINE_8)
        cv2.fillPoly(self.mask, [p], 1, cv2.LINE_8)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, colour: _Colour) -> None:
        centre, axes = self.at(cx, cy), (max(1, round(rx * self.w)), max(1, round(ry * self.h)))
        cv2.ellipse(self.rgb, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_8)
        cv2.ellipse(self.mask, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8)


# Each draws one silhouette on the canvas and returns its shading, float (h, w).
def _draw_bottle(c: _SpriteCanvas, body: _Colour, accent: _Colour, trim: _Colour) -> np.ndarray:
    outline = [(0.0, 0.42), (0.12, 0.33), (0.36, 0.28), (0.36, 0.12), (0.64, 0.12), (0.64, 0.28)]
    outline += [(0.88, 0.33), (1.0, 0.42), (1.0, 0.97), (0.93, 1.0), (0.07, 1.0), (0.0, 0.97)]
    c.poly(outline, body)
    c.poly([(0.3, 0.0), (0.7, 0.0), (0.7, 0.14), (0.3, 0.14)], trim)
    c.poly([(0.08, 0.55), (0.92, 0.55), (0.92, 0.82), (0.08, 0.82)], accent)
    return np.broadcast_to(0.55 + 0.45 * np.sin(np.pi * np.clip(c.xs * 1.1 - 0.02, 0, 1))[None, :], (c.h, c.w))


def _draw_box(c: _SpriteCanvas, body: _Colour, accent: _Colour, trim: _Colour) -> np.ndarray:
    c.poly([(0.0, 0.25), (0.72, 0.25), (0.72, 1.0), (0.0, 1.0)], body)
    c.poly([(0.0, 0.25), (0.28, 0.0), (1.0, 0.0), (0.72, 0.25)], tuple(min(255.0, v * 1.3 + 30) for v in body))
    c.poly([(0.72, 0.25), (1.0, 0.0), (1.0, 0.75), (0.72, 1.0)], tuple(v * 0.6 for v in body))
    c.poly([(0.0, 0.5), (0.72, 0.5), (0.72, 0.7), (0.0, 0.7)], accent)
    c.ellipse(0.36, 0.85, 0.1, 0.07, trim)
    return np.broadcast_to(1.05 - 0.25 * c.ys[:, None], (c.h, c.w))


def _draw_shoe(c: _SpriteCanvas, body: _Colour, accent: _Colour, trim: _Colour) -> np.ndarray:
    upper = [(0.02, 0.55), (0.06, 0.3), (0.28, 0.05), (0.46, 0.05), (0.52, 0.3)]
    upper += [(0.75, 0.4), (0.95, 0.5), (1.0, 0.72), (0.0, 0.76)]
    c.poly(upper, body)
    c.poly([(0.0, 0.72), (1.0, 0.68), (1.0, 0.88), (0.95, 0.99), (0.03, 0.99), (0.0, 0.9)], trim)
    c.poly([(0.18, 0.6), (0.55, 0.42), (0.8, 0.5), (0.5, 0.55), (0.2, 0.66)], accent)
    return np.broadcast_to(1.1 - 0.35 * c.ys[:, None], (c.h, c.w))


def _draw_jar(c: _SpriteCanvas, body: _Colour, accent: _Colour, trim: _Colour) -> np.ndarray:
    c.poly([(0.0, 0.3), (1.0, 0.3), (1.0, 0.9), (0.0, 0.9)], body)
    c.ellipse(0.5, 0.9, 0.5, 0.09, body)
    c.poly([(0.05, 0.05), (0.95, 0.05), (0.95, 0.3), (0.05, 0.3)], trim)
    c.ellipse(0.5, 0.06, 0.45, 0.06, trim)
    c.poly([(0.0, 0.45), (1.0, 0.45), (1.0, 0.75), (0.0, 0.75)], accent)
    return np.broadcast_to(0.55 + 0.45 * np.sin(np.pi * c.xs)[None, :], (c.h, c.w))


def _draw_watch(c: _SpriteCanvas, body: _Colour, accent: _Colour, trim: _Colour) -> np.ndarray:
    c.poly([(0.3, 0.0), (0.7, 0.0), (0.7, 1.0), (0.3, 1.0)], trim)
    c.ellipse(0.5, 0.5, 0.49, 0.29, body)
    c.ellipse(0.5, 0.5, 0.38, 0.22, accent)
    hand_width = max(1, c.w // 30)
    cv2.line(c.rgb, c.at(0.5, 0.5), c.at(0.5, 0.36), (20, 20, 20), hand_width)
    cv2.line(c.rgb, c.at(0.5, 0.5), c.at(0.7, 0.52), (20, 20, 20), hand_width)
    radius = np.sqrt(((c.xs[None, :] - 0.5) / 0.5) ** 2 + ((c.ys[:, None] - 0.5) / 0.3) ** 2)
    return 1.1 - 0.3 * np.clip(radius, 0, 1.5)


_SPRITE_DRAWERS = {
    "bottle": _draw_bottle,
    "box": _draw_box,
    "shoe": _draw_shoe,
    "jar": _draw_jar,
    "watch": _draw_watch,
}


def product_sprite(kind: str, target_h: int, colours: dict[str, tuple[float, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a product silhouette with shading: ``(rgb uint8 (h, w, 3), mask bool (h, w))``."""
    aspect = _SPRITE_ASPECTS[kind]
    h = max(8, int(target_h))
    w = max(8, int(round(h * aspect)))
    canvas = _SpriteCanvas(h, w)
    draw = _SPRITE_DRAWERS.get(kind)
    if draw is None:
        raise ValueError(f"unknown product kind {kind!r}; known: {PRODUCT_KINDS}")
    shade = draw(canvas, colours["body"], colours["accent"], colours["trim"])
    highlight = np.exp(-(((canvas.xs - 0.28) / 0.05) ** 2))[None, :] * 70.0
    shaded = canvas.rgb.astype(np.float32) * shade[..., None] + highlight[..., None]
    out = np.where(canvas.mask[..., None] > 0, np.clip(shaded, 0, 255), 0).astype(np.uint8)
    return out, canvas.mask.astype(bool)


def product_colours(rng: np.random.Generator) -> dict[str, tuple[float, ...]]:
    hue = rng.random()
    return {
        "body": tuple(float(c) for c in _hsv(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 0.95))),
        "accent": tuple(float(c) for c in _hsv(hue + 0.5, 0.25, 0.97)),
        "trim": tuple(float(c) for c in _hsv(hue + 0.1, 0.3, rng.uniform(0.2, 0.35))),
    }


def paste(frame: np.ndarray, full_mask: np.ndarray, sprite: np.ndarray, smask: np.ndarray, x: int, y: int) -> None:
    """Draw the sprite with its top-left at (x, y), clipped to the frame; mark it in ``full_mask``."""
    H, W = frame.shape[:2]
    h, w = smask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    sub_mask = smask[y0 - y : y1 - y, x0 - x : x1 - x]
    region = frame[y0:y1, x0:x1]
    region[sub_mask] = sprite[y0 - y : y1 - y, x0 - x : x1 - x][sub_mask]
    full_mask[y0:y1, x0:x1] |= sub_mask


def product_track(rng: np.random.Generator, presence: str, n: int, W: int, H: int, w: int, h: int) -> np.ndarray:
    """Top-left positions ``int (n, 2)`` for a scene; rows of -10**6 mean off-frame."""

    def inside() -> np.ndarray:
        return np.array(
            [
                rng.uniform(0.12 * W, 0.88 * W - w) if W - w > 0.24 * W else (W - w) / 2,
                rng.uniform(0.22 * H, 0.8 * H - h) if H - h > 0.42 * H else (H - h) / 2,
            ]
        )

    t = np.linspace(0.0, 1.0, n)[:, None]
    start, end = inside(), inside()
    path = start * (1 - t) + end * t
    path[:, 1] += np.sin(t[:, 0] * 2 * math.pi * rng.uniform(0.5, 1.5)) * 0.02 * H
    if presence in ("enter", "exit"):
        side = int(rng.integers(3))  # 0 left, 1 right, 2 bottom
        off = {
            0: np.array([-w - 4.0, path[0, 1]]),
            1: np.array([W + 4.0, path[0, 1]]),
            2: np.array([path[0, 0], H + 4.0]),
        }[side]
        split = rng.uniform(0.35, 0.6)
        u = np.clip(t / split, 0, 1) if presence == "enter" else np.clip((t - (1 - split)) / split, 0, 1)
        if presence == "enter":
            path = off * (1 - u) + path * u
        else:
            path = path * (1 - u) + off * u
    if presence == "absent":
        path[:] = -(10**6)
    return np.round(path).astype(int)


def make_distractors(rng: np.random.Generator, W: int, H: int, palette: list[np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for _ in range(int(rng.integers(3, 6))):
        colour = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 1.0)) if rng.random() < 0.6 else palette[2]
        out.append(
            {
                "shape": ("circle", "rect", "triangle")[int(rng.integers(3))],
                "size": float(rng.uniform(0.05, 0.13) * W),
                "pos": np.array([rng.uniform(0, W), rng.uniform(0, H)]),
                "vel": rng.uniform(-4, 4, size=2) * W / 288,
                "colour": tuple(float(c) for c in colour),
            }
        )
    return out


def draw_distractor(frame: np.ndarray, d: dict[str, Any], k: int, W: int, H: int) -> None:
    span = np.array([W, H], dtype=float)
    raw = d["pos"] + d["vel"] * k
    pos = raw % (2 * span)
    pos = np.where(pos > span, 2 * span - pos, pos)  # bounce off the edges
    cx, cy, s = int(pos[0]), int(pos[1]), int(d["size"])
    if d["shape"] == "circle":
        cv2.circle(frame, (cx, cy), s, d["colour"], -1, cv2.LINE_AA)
    elif d["shape"] == "rect":
        cv2.rectangle(frame, (cx - s, cy - s // 2), (cx + s, cy + s // 2), d["colour"], -1, cv2.LINE_AA)
    else:
        tri = np.array([[cx, cy - s], [cx - s, cy + s], [cx + s, cy + s]], np.int32)
        cv2.fillPoly(frame, [tri], d["colour"], cv2.LINE_AA)


def _captions(rng: np.random.Generator, keyword: str, n_scenes: int) -> list[tuple[str, str, str]]:
    """(top caption, bottom banner, price tag) per scene, like real ad overlays."""
    title = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in keyword.upper()) or "NEW DROP"
    price = f"${int(rng.integers(9, 90))}.99"
    tops = [title, "LIMITED OFFER", "BEST SELLER", f"ONLY {price}", "-30% TODAY", title]
    bottoms = ["SHOP NOW", "FREE SHIPPING", "LIMITED OFFER", "TAP TO BUY", "SWIPE UP"]
    out = []
    for scene in range(n_scenes):
        top = title if scene == 0 else tops[int(rng.integers(len(tops)))]
        out.append((top, bottoms[int(rng.integers(len(bottoms)))], price if rng.random() < 0.6 else ""))
    return out


def draw_caption(
    frame: np.ndarray,
    cover: np.ndarray,
    text: str,
    centre_x: int,
    baseline_y: int,
    max_width: int,
    scale: float,
    colour: tuple[float, ...],
    banner: tuple[float, ...] | None,
) -> None:
    """Draw an outlined caption (optionally on a banner) on the frame and on the coverage layer."""
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    if tw > max_width:
        scale *= max_width / tw
        thickness = max(1, int(round(scale * 2)))
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    org = (int(centre_x - tw / 2), int(baseline_y))
    if banner is not None:
        pad = max(3, th // 3)
        p0, p1 = (org[0] - pad, org[1] - th - pad), (org[0] + tw + pad, org[1] + base + pad)
        cv2.rectangle(frame, p0, p1, banner, -1)
        cv2.rectangle(cover, p0, p1, 255, -1)
    else:
        cv2.putText(frame, text, org, _FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(cover, text, org, _FONT, scale, 255, thickness + 2, cv2.LINE_AA)
    cv2.putText(frame, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)
    cv2.putText(cover, text, org, _FONT, scale, 255, thickness, cv2.LINE_AA)


def soundtrack(rng: np.random.Generator, bounds: list[int], fps: float) -> np.ndarray:
    """A mono chord-and-beat loop whose chord changes at every scene cut, ``float32 (1, n)``.

    Mono halves the AAC encoding time, which is a third of the render time in stereo.
    """
    n = int(round(bounds[-1] / fps * AUDIO_RATE))
    t = np.arange(n, dtype=np.float64) / AUDIO_RATE
    cut_times = np.array(bounds[1:-1], dtype=np.float64) / fps
    scene = np.searchsorted(cut_times, t, side="right")
    # Chords cycle after six scenes (a long real-size ad has more); same draws as before for <= 6.
    chords = rng.permutation(6)[np.arange(len(bounds) - 1) % 6]
    roots = 220.0 * 2.0 ** (np.array([0, 3, 5, 7, 10, 12])[chords] / 12.0)
    f = roots[scene]
    minor = rng.random() < 0.5
    third = 2.0 ** ((3 if minor else 4) / 12.0)
    chord = (
        np.sin(2 * np.pi * f * t) + 0.7 * np.sin(2 * np.pi * f * third * t) + 0.6 * np.sin(2 * np.pi * f * 1.5 * t)
    ) * 0.08
    bpm = rng.uniform(96, 128)
    beat = 60.0 / bpm
    since = t % beat
    kick = np.sin(2 * np.pi * 55.0 * since) * np.exp(-since / 0.07) * 0.45
    since_hat = (t + beat / 2) % beat
    hat = rng.standard_normal(n) * np.exp(-since_hat / 0.015) * 0.06
    return np.clip(chord + kick + hat, -1.0, 1.0).astype(np.float32)[None, :]


#: Product height as a share of the frame height, per silhouette.
_PRODUCT_HEIGHT = {"bottle": 0.38, "box": 0.24, "shoe": 0.15, "jar": 0.2, "watch": 0.32}


@dataclass(frozen=True)
class ProductLook:
    """An ad's product: silhouette, colours, base height in pixels, and its mean colour inside the edges."""

    kind: str
    colours: dict[str, tuple[float, ...]]
    base_h: float
    mean_rgb: tuple[int, int, int]

    @classmethod
    def make(cls, kind: str, colours: dict[str, tuple[float, ...]], frame_h: int) -> ProductLook:
        base_h = _PRODUCT_HEIGHT[kind] * frame_h
        reference_sprite, reference_mask = product_sprite(kind, base_h, colours)
        inner = cv2.erode(reference_mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        mean_rgb = tuple(int(round(float(c))) for c in reference_sprite[inner].mean(axis=0))
        return cls(kind, colours, base_h, mean_rgb)

    def scene_sprite(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The product for one scene, at 85-115% of its base height: ``(rgb, mask)``."""
        return product_sprite(self.kind, self.base_h * rng.uniform(0.85, 1.15), self.colours)


@dataclass(frozen=True)
class SceneOverlays:
    """One scene's captions, drawn over the product: top caption, bottom banner, a price tag from a frame on."""

    top: str
    bottom: str
    price: str
    banner: tuple[float, ...]
    #: x and y of the price tag, and the scene frame it appears in.
    price_at: tuple[int, int, int]

    def draw(self, frame: np.ndarray, k: int) -> np.ndarray:
        """Draw scene frame ``k``'s captions; returns the pixels they touch (``uint8 (H, W)``, nonzero)."""
        H, W = frame.shape[:2]
        text_scale = W / 288.0
        cover = np.zeros((H, W), np.uint8)
        white = (255, 255, 255)
        draw_caption(frame, cover, self.top, W // 2, int(0.12 * H), int(0.9 * W), 0.95 * text_scale, white, None)
        draw_caption(
            frame, cover, self.bottom, W // 2, int(0.93 * H), int(0.8 * W), 0.75 * text_scale, white, self.banner
        )
        if self.price and k >= self.price_at[2]:
            x, y, _ = self.price_at
            draw_caption(frame, cover, self.price, x, y, int(0.5 * W), 0.8 * text_scale, (20, 20, 20), (255, 230, 0))
        return cover


@dataclass(frozen=True)
class SceneLayers:
    """What moves in one scene: a background canvas panned under the frame, distractors, the product on its track."""

    canvas: np.ndarray
    #: Pan in pixels per frame (x, y), and the canvas corner the first frame shows.
    pan: np.ndarray
    origin: tuple[int, int]
    sprite: np.ndarray
    sprite_mask: np.ndarray
    track: np.ndarray
    movers: list[dict[str, Any]]

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        pan: np.ndarray,
        length: int,
        frame_size: tuple[int, int],
        background: str,
        palette: list[np.ndarray],
        product: ProductLook,
        presence: str,
        draw_background: Callable[..., np.ndarray] = background_frame,
    ) -> SceneLayers:
        """Draw the scene's canvas (large enough for ``length`` frames of ``pan``), sprite, track and movers."""
        W, H = frame_size
        pad_x, pad_y = int(math.ceil(abs(pan[0]) * length)) + 1, int(math.ceil(abs(pan[1]) * length)) + 1
        canvas = draw_background(background, rng, H + pad_y, W + pad_x, palette)
        sprite, sprite_mask = product.scene_sprite(rng)
        track = product_track(rng, presence, length, W, H, sprite_mask.shape[1], sprite_mask.shape[0])
        movers = make_distractors(rng, W, H, palette)
        origin = (0 if pan[0] >= 0 else pad_x - 1, 0 if pan[1] >= 0 else pad_y - 1)
        return cls(canvas, pan, origin, sprite, sprite_mask, track, movers)

    def frame(self, k: int, product: np.ndarray, overlays: SceneOverlays) -> np.ndarray:
        """Scene frame ``k`` (RGB); marks the product pixels still visible after the overlays in ``product``.

        ``product`` is the frame's all-False ``bool (H, W)`` mask, filled in place.
        """
        H, W = product.shape
        ox, oy = int(round(self.origin[0] + self.pan[0] * k)), int(round(self.origin[1] + self.pan[1] * k))
        frame = self.canvas[oy : oy + H, ox : ox + W].copy()
        for mover in self.movers:
            draw_distractor(frame, mover, k, W, H)
        paste(frame, product, self.sprite, self.sprite_mask, int(self.track[k, 0]), int(self.track[k, 1]))
        product &= overlays.draw(frame, k) == 0
        return frame


class FrameMeasures:
    """Per-frame attention proxy and luma brightness/contrast, averaged per scene at the end."""

    def __init__(self, n_frames: int, height: int, width: int) -> None:
        self.weights = centre_bias_weights(height, width)
        self.weight_total = float(self.weights.sum())
        self.attention = np.zeros(n_frames)
        self.luma_mean = np.zeros(n_frames)
        self.luma_sd = np.zeros(n_frames)

    def record(self, index: int, frame: np.ndarray, product: np.ndarray) -> None:
        self.attention[index] = float(self.weights[product].sum()) / self.weight_total
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        mean, sd = cv2.meanStdDev(luma)
        self.luma_mean[index], self.luma_sd[index] = float(mean[0, 0]) / 255.0, float(sd[0, 0]) / 255.0

    def scene_stats(self, bounds: list[int]) -> list[dict[str, float]]:
        return [
            {
                "attention_proportion": float(self.attention[a:b].mean()),
                "contrast": float(self.luma_sd[a:b].mean()),
                "brightness": float(self.luma_mean[a:b].mean()),
            }
            for a, b in zip(bounds[:-1], bounds[1:], strict=False)
        ]


def _plan_scene_looks(rng: np.random.Generator, n_scenes: int) -> tuple[list[str], list[str]]:
    """Per scene: a background kind (never the previous one) and the product's presence.

    Every ad shows its product fully in some scene and loses it in another.
    """
    backgrounds: list[str] = []
    for _ in range(n_scenes):
        choices = [k for k in BACKGROUND_KINDS if not backgrounds or k != backgrounds[-1]]
        backgrounds.append(choices[int(rng.integers(len(choices)))])
    presences = [_PRESENCES[int(rng.integers(len(_PRESENCES)))] for _ in range(n_scenes)]
    if "full" not in presences:
        presences[int(rng.integers(n_scenes))] = "full"
    if all(p == "full" for p in presences):
        presences[int(rng.integers(n_scenes))] = ("absent", "enter", "exit")[int(rng.integers(3))]
    return backgrounds, presences


def _random_overlays(
    rng: np.random.Generator, texts: tuple[str, str, str], length: int, W: int, H: int
) -> SceneOverlays:
    """The scene's captions with a random banner colour and a price tag at a random place and time."""
    top, bottom, price = texts
    banner = tuple(float(c) for c in _hsv(rng.random(), 0.85, 0.9))
    price_at = (
        int(rng.uniform(0.15 * W, 0.85 * W)),
        int(rng.uniform(0.3 * H, 0.75 * H)),
        int(length * rng.uniform(0.3, 0.7)),
    )
    return SceneOverlays(top, bottom, price, banner, price_at)


def _render_video(
    layout: DataLayout,
    video_id: str,
    keyword: str,
    keyword_kind: str,
    industry: str,
    product_kind: str,
    W: int,
    H: int,
    fps: float,
    duration_range_s: tuple[float, float],
    rng: np.random.Generator,
) -> Rendered:
    """Render one ad frame by frame into its mp4; keep only the bool masks and per-scene stats."""
    bounds = _scene_bounds(rng, fps, duration_range_s)
    n_scenes, n_frames = len(bounds) - 1, bounds[-1]
    backgrounds, presences = _plan_scene_looks(rng, n_scenes)
    palettes = scene_palettes(rng, n_scenes)
    product = ProductLook.make(product_kind, product_colours(rng), H)
    captions = _captions(rng, keyword, n_scenes)
    audio = soundtrack(rng, bounds, fps)

    masks = np.zeros((n_frames, H, W), dtype=bool)
    measures = FrameMeasures(n_frames, H, W)
    path = layout.videos_dir / f"{video_id}.mp4"
    with VideoWriter(path, fps, audio_pcm=(audio, AUDIO_RATE)) as writer:
        for s in range(n_scenes):
            length = bounds[s + 1] - bounds[s]
            pan = rng.uniform(-1.5, 1.5, size=2) * W / 288
            layers = SceneLayers.draw(rng, pan, length, (W, H), backgrounds[s], palettes[s], product, presences[s])
            overlays = _random_overlays(rng, captions[s], length, W, H)
            for index in range(bounds[s], bounds[s + 1]):
                frame = layers.frame(index - bounds[s], masks[index], overlays)
                measures.record(index, frame, masks[index])
                writer.write(frame)
    mask_path = layout.provided_mask_path(video_id)
    save_mask_stack(mask_path, masks)
    return Rendered(
        video_id,
        path,
        mask_path,
        keyword,
        keyword_kind,
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


# -- outcomes and files --------------------------------------------------------------------------
def _r6(x: float) -> float:
    return round(float(x), 6)


def _f6(x: float) -> str:
    """Fixed six decimals (never scientific notation), the precision the JSON also carries."""
    return f"{x:.6f}"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def attach_outcomes(
    r: Rendered, no_rows: bool, contrast_mean: float, contrast_sd: float, rng: np.random.Generator
) -> DemoVideo:
    """Apply the planted relation to each measured scene (values rounded as written to the CSV)."""
    ctr_c, cvr_c, rem_c = PLANTED_RELATION["ctr"], PLANTED_RELATION["cvr"], PLANTED_RELATION["remain"]
    imp = PLANTED_RELATION["impressions"]
    impressions = int(round(imp["median"] * math.exp(rng.normal(0.0, imp["log_sd"]))))
    n_scenes = len(r.bounds) - 1
    scenes = []
    for s, stats in enumerate(r.scene_stats):
        att, contrast, brightness = _r6(stats["attention_proportion"]), _r6(stats["contrast"]), _r6(stats["brightness"])
        z = (contrast - contrast_mean) / contrast_sd
        position = s / (n_scenes - 1) if n_scenes > 1 else 0.0
        ctr = _sigmoid(
            ctr_c["intercept"]
            + ctr_c["industry"][r.industry]
            + ctr_c["attention_proportion"] * att
            + ctr_c["contrast_z"] * z
            + rng.normal(0.0, ctr_c["noise_sd"])
        )
        cvr = _sigmoid(
            cvr_c["intercept"]
            + cvr_c["industry"][r.industry]
            + cvr_c["attention_proportion"] * att
            + cvr_c["contrast_z"] * z
            + rng.normal(0.0, cvr_c["noise_sd"])
        )
        remain = _sigmoid(
            rem_c["intercept"]
            + rem_c["attention_proportion"] * att
            + rem_c["scene_position"] * position
            + rng.normal(0.0, rem_c["noise_sd"])
        )
        ctr, cvr = _r6(ctr), _r6(cvr)
        clicks = _r6(ctr * impressions)
        a, b = r.bounds[s], r.bounds[s + 1]
        scenes.append(
            DemoScene(
                scene_number=s + 1,
                start_frame=a,
                end_frame=b,
                start_time=a / r.fps,
                end_time=b / r.fps,
                background=r.backgrounds[s],
                product_presence=r.presences[s],
                attention_proportion=att,
                contrast=contrast,
                brightness=brightness,
                ctr=ctr,
                cvr=cvr,
                clicks=clicks,
                conversions=_r6(cvr * clicks),
                remain=_r6(remain),
            )
        )
    return DemoVideo(
        video_id=r.video_id,
        path=r.path,
        mask_path=r.mask_path,
        keyword=r.keyword,
        keyword_kind=r.keyword_kind,
        industry=r.industry,
        product_kind=r.product_kind,
        product_mean_rgb=r.product_mean_rgb,
        width=r.width,
        height=r.height,
        fps=r.fps,
        n_frames=r.n_frames,
        duration_s=r.n_frames / r.fps,
        impressions=impressions,
        has_scene_rows=not no_rows,
        scenes=tuple(scenes),
    )


def _csv_text(header: Sequence[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def alignment_csv(videos: Sequence[DemoVideo]) -> str:
    rows = []
    for video in videos:
        if not video.has_scene_rows:
            continue
        for s in video.scenes:
            rows.append(
                [
                    video.video_id,
                    str(s.scene_number),
                    _f6(s.attention_proportion),
                    repr(s.start_time),
                    repr(s.end_time),
                    _f6(s.ctr),
                    _f6(s.cvr),
                    _f6(s.clicks),
                    _f6(s.conversions),
                    _f6(s.remain),
                    _f6(s.contrast),
                    _f6(s.brightness),
                    video.industry,
                ]
            )
    return _csv_text(ALIGNMENT_COLUMNS, rows)


def keywords_csv(videos: Sequence[DemoVideo], clips: Sequence[RealClip]) -> str:
    rows = [[v.video_id, v.keyword] for v in videos] + [[c.video_id, c.keyword] for c in clips]
    return _csv_text(KEYWORD_COLUMNS, rows)


def _copy_real_clip(layout: DataLayout, source_dir: Path, name: str) -> RealClip:
    source = source_dir / name
    if not source.is_file():
        raise FileNotFoundError(f"real clip {source} does not exist (real_clip_names entry {name!r})")
    video_id = validate_video_id(f"real-{video_id_from_filename(source.stem)}", where=f"real clip {source}")
    target = layout.videos_dir / f"{video_id}{source.suffix.lower()}"
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return RealClip(video_id=video_id, path=target, source=source, keyword=REAL_CLIP_KEYWORDS.get(source.stem, ""))


def _write_real_clip_annotations(layout: DataLayout, clips: Sequence[RealClip]) -> None:
    """One box per product view for each real clip, in ``raw/annotations.csv`` (other videos' rows kept)."""
    from align_core.inputs.annotations import AnnotationRow, annotations_path, write_annotations

    rows = [
        AnnotationRow(0, clip.video_id, "box", None, frame, float(x), float(y), float(w), float(h), label)
        for clip in clips
        for frame, x, y, w, h, label in REAL_CLIP_ANNOTATIONS.get(clip.source.stem, ())
    ]
    if rows or annotations_path(layout).exists():
        write_annotations(annotations_path(layout), rows, replace_videos=[c.video_id for c in clips])


def _write_real_clip_protect(layout: DataLayout, clips: Sequence[RealClip]) -> None:
    """The real clips' face boxes in ``raw/protect.csv`` (rows of other videos kept, these replaced)."""
    from align_core.perception.protect import USER_CSV_COLUMNS

    ours = {clip.video_id for clip in clips}
    kept: list[dict[str, str]] = []
    if layout.protect_csv.is_file():
        with open(layout.protect_csv, newline="", encoding="utf-8") as handle:
            kept = [row for row in csv.DictReader(handle) if row.get("video_id") not in ours]
    rows = kept + [
        {
            "video_id": clip.video_id,
            "scene_number": "",
            "start_frame": "",
            "end_frame": "",
            "x0": str(x0),
            "y0": str(y0),
            "x1": str(x1),
            "y1": str(y1),
            "label": label,
        }
        for clip in clips
        for x0, y0, x1, y1, label in REAL_CLIP_PROTECT.get(clip.source.stem, ())
    ]
    if not rows:
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(USER_CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(layout.protect_csv, out.getvalue())


def _remove_stale(layout: DataLayout, keep: set[str]) -> None:
    """Delete videos and masks of an earlier demo corpus in this directory that are not kept."""
    previous = layout.raw_dir / "demo_corpus.json"
    if not previous.is_file():
        return
    try:
        listed = json.loads(previous.read_text(encoding="utf-8"))
        entries = (
            list(listed.get("videos", [])) + list(listed.get("real_size_ads", [])) + list(listed.get("real_clips", []))
        )
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"{previous}: earlier demo corpus description is unreadable ({exc}); "
            "remove it (and the demo files it listed) by hand"
        ) from exc
    for entry in entries:
        video_id = validate_video_id(str(entry.get("video_id", "")), where=str(previous))
        if video_id in keep:
            continue
        for candidate in (layout.root / str(entry.get("path", "")), layout.provided_mask_path(video_id)):
            resolved = candidate.resolve()
            if resolved.parent in (layout.videos_dir, layout.masks_dir) and resolved.stem == video_id:
                resolved.unlink(missing_ok=True)


def _corpus_json(corpus: DemoCorpus, width: int, height: int, fps: float, keywords_source: Path | None) -> str:
    root = corpus.layout.root
    payload = {
        "description": "Procedural demo ads with exact product masks and a planted engagement relation "
        "(align_demo.corpus). Files: raw/videos/<id>.mp4, raw/masks/<id>.npz "
        "(bool T x H x W, product pixels not covered by overlays), raw/alignment_score.csv, "
        "raw/keywords.csv.",
        "seed": corpus.seed,
        "frame_size": [width, height],
        "fps": float(fps),
        "audio": {
            "codec": "aac",
            "sample_rate": AUDIO_RATE,
            "channels": 1,
            "content": "chord (changes at every scene cut) + kick and hi-hat loop",
        },
        "keywords_source": Path(keywords_source).name if keywords_source is not None else "built-in list",
        "mask_definition": "product raster (cv2.LINE_8, no anti-aliasing) minus every pixel touched by a caption "
        "overlay (anti-aliased edges included); distractors are drawn behind the product",
        "attention_proxy": ATTENTION_PROXY,
        "contrast_brightness": "BT.601 luma in [0,1] of the rendered frames before encoding: brightness = mean, "
        "contrast = RMS (sd); scene value = mean over its frames",
        "planted_relation": PLANTED_RELATION,
        "contrast_z": {"mean": corpus.contrast_mean, "sd": corpus.contrast_sd},
        "videos_without_scene_rows": [v.video_id for v in corpus.videos if not v.has_scene_rows],
        "real_clips_note": "copied unchanged; keyword only, no scene rows, no masks, no audio track",
        "videos": [v.to_dict(root) for v in corpus.videos],
        "real_clips": [c.to_dict(root) for c in corpus.real_clips],
    }
    if corpus.real_size_videos:
        from align_demo.real_size import CALL_TO_ACTION, PRESENCE_CYCLE, PRICE, SCENE_S

        payload["real_size_note"] = (
            "realistic-size ads (align_demo.real_size): their own frame size and fps (in each record), a scene "
            f"about every {SCENE_S:g} s with the product {' / '.join(PRESENCE_CYCLE)} in turn, overlays: a caption, "
            f"a {PRICE} price tag and a {CALL_TO_ACTION} banner; masks are per-frame bit-packed and deflated "
            "(align_core.io.frames.MaskFrames keys mask_frames_zlib, mask_offsets, mask_coverage, mask_frame_size), "
            "same mask, attention-proxy and outcome definitions as the other videos (contrast_z uses the mean "
            "and sd above)"
        )
        payload["real_size_ads"] = [v.to_dict(root) for v in corpus.real_size_videos]
    return json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
