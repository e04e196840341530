"""Video scorer cards: NSS and CC per frame against human gaze recorded on video.

The clip is the UCF Sports "Diving-Side-001" sequence in ``shared/data/saliency/ucf_sports_diving``
(52 frames with binary fixation maps; the camera pans with the diver). Its frames are split in
time: anything tuned on video (the motion cue's weight and scale) was chosen on the first half
(frames 0-25, :data:`TUNE_FRAMES`), and cards report the second half (frames 26-51,
:data:`REPORT_FRAMES`). Every map is computed over the whole clip in order, as the pipeline would
(the motion average runs through the tuning half); only the scores are split.

Rows: the default scorer as the video driver runs it (keyframes every 6 frames carried, plus each
frame's motion cue), its parts (image: the carried content map without centre prior; motion: the
cue alone; centre: its Gaussian prior), each independent verifier per frame (with its centre
prior, as the manipulation check uses it), a frame-difference baseline (no camera model) and a
Gaussian centre-bias baseline (sigma 0.3, the image cards' baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from align_core.measurement.image_metrics import centre_prior
from align_core.measurement.saliency_metrics import blur_fixations, cc, centre_bias_map, nss
from align_core.perception.attention.maps import AttentionConfig, AttentionMaps, attention_maps_from_frames
from align_core.perception.attention.motion import MotionSettings, frame_difference
from align_core.perception.attention.scorers import FeatureRichnessScorer, FeatureWeights

__all__ = [
    "INDEPENDENT",
    "REPORT_FRAMES",
    "TUNE_FRAMES",
    "VideoGaze",
    "load_ucf_diving",
    "video_card_rows",
]

TUNE_FRAMES = range(0, 26)
REPORT_FRAMES = range(26, 52)
UCF_DIVING = Path("saliency") / "ucf_sports_diving"
INDEPENDENT = ("itti_koch", "image_signature", "spectral_residual")


class VideoGaze:
    """A clip's RGB frames (in order) and binary fixation maps of the same size."""

    def __init__(self, frames: list[np.ndarray], fixations: list[np.ndarray], name: str) -> None:
        if len(frames) != len(fixations) or not frames:
            raise ValueError(f"{name}: {len(frames)} frames but {len(fixations)} fixation maps")
        self.frames, self.fixations, self.name = frames, fixations, name
        self.densities = [blur_fixations(fix) for fix in fixations]

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]


def load_ucf_diving(shared_data: Path) -> VideoGaze:
    """The UCF Sports diving clip from ``shared_data`` (frames and fixations, by sorted name)."""
    root = Path(shared_data) / UCF_DIVING
    names = sorted((root / "images").glob("*.png"))
    if not names:
        raise FileNotFoundError(f"{root / 'images'}: no frames (see shared/data/README.md)")
    frames, fixations = [], []
    for path in names:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        fixation = cv2.imread(str(root / "fixation" / path.name), cv2.IMREAD_GRAYSCALE)
        if image is None or fixation is None:
            raise ValueError(f"{path}: frame or its fixation map cannot be read")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        fixations.append(fixation > 0)
    return VideoGaze(frames, fixations, "ucf_sports_diving")


def _score(maps: Callable[[int], np.ndarray | None], clip: VideoGaze, frames: Iterable[int]) -> dict[str, float]:
    """Mean NSS and CC over ``frames`` that have fixations and a map (None: the row has none there)."""
    height, width = clip.size
    values = []
    for index in frames:
        amap = maps(index)
        if amap is None or not clip.fixations[index].any():
            continue
        if amap.shape != (height, width):
            amap = cv2.resize(amap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        values.append((nss(amap, clip.fixations[index]), cc(amap, clip.densities[index])))
    result = np.mean(values, axis=0)
    return {"NSS": float(result[0]), "CC": float(result[1]), "frames": len(values)}


def _driver_maps(clip: VideoGaze, scorer: FeatureRichnessScorer) -> AttentionMaps:
    return attention_maps_from_frames(
        iter(clip.frames), len(clip.frames), clip.size, [0], scorer, AttentionConfig(), video=clip.name
    )


def _independent_rows(clip: VideoGaze, frames: list[int]) -> dict[str, Callable[[int], np.ndarray | None]]:
    from align_core.perception.attention.independent import SaliencyModelScorer

    rows: dict[str, Callable[[int], np.ndarray | None]] = {}
    for name in INDEPENDENT:
        model = SaliencyModelScorer(name)
        computed = {index: model(clip.frames[index]) for index in frames}
        rows[name] = computed.get
    return rows


def video_card_rows(
    clip: VideoGaze,
    frames: Iterable[int],
    weights: FeatureWeights | None = None,
    *,
    independent: bool = True,
    motion: MotionSettings | None = None,
) -> dict[str, dict[str, float]]:
    """NSS/CC per row (see the module docstring) averaged over ``frames`` of ``clip``."""
    frames = [index for index in frames if 0 <= index < len(clip.frames)]
    weights = weights or FeatureWeights()
    scorer = FeatureRichnessScorer(weights, motion_settings=motion)
    full = _driver_maps(clip, scorer)
    image_scorer = FeatureRichnessScorer(replace(weights, centre=0.0, motion=0.0))
    image = _driver_maps(clip, image_scorer)
    height, width = clip.size
    prior = centre_prior(height, width, weights.centre_sigma_frac, dtype=np.float32)
    bias = centre_bias_map(height, width, sigma_frac=0.3)
    rows: dict[str, Callable[[int], np.ndarray | None]] = {
        "default": full.analysis_map_at,
        "image part": image.analysis_map_at,
        "motion part": lambda t: None if full.motion_maps is None else full.motion_maps[t].astype(np.float32),
        "centre part": lambda t: prior,
    }
    if independent:
        rows.update(_independent_rows(clip, frames))
    rows["frame difference"] = lambda t: frame_difference(clip.frames[t - 1], clip.frames[t]) if t > 0 else None
    rows["centre bias"] = lambda t: bias
    return {name: _score(maps, clip, frames) for name, maps in rows.items()}
