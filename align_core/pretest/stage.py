"""What the pretest's Dagster assets run: the studies' registry rows and one video's human attention.

Kept here, without Dagster, so a script or test runs exactly what the assets run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from align_core.io.layout import DataLayout
from align_core.measurement.saliency_metrics import centre_bias_map
from align_core.perception.attention.maps import load_attention_maps
from align_core.perception.masks import load_keyword_masks
from align_core.pretest.collect import load_collected_study, study_ids
from align_core.pretest.human_maps import (
    HumanMapSettings,
    VideoGrid,
    save_human_maps,
    scorer_card,
    video_human_attention,
)
from align_core.pretest.study import study_dir

__all__ = [
    "CENTRE_BIAS_SCORER",
    "human_maps_path",
    "study_rows",
    "video_human_stage",
]

CENTRE_BIAS_SCORER = "centre bias (reference)"
TRIAL_COLUMNS = ["study_id", "session_id", "video_id", "variant", "frame_index", "window", "alignment"]
CARD_COLUMNS = ["study_id", "variant", "scorer", "video_id", "frames", "nss", "cc"]


def study_rows(data_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per built study (each ``study.json`` validated; a bad one fails naming its file)."""
    rows = []
    for study_id in study_ids(data_dir):
        study = load_collected_study(data_dir, study_id)
        rows.append(
            {
                "study_id": study_id,
                "experiment_id": str(study["experiment_id"]),
                "design_sha256": str(study["design_sha256"]),
                "created_at": str(study.get("created_at")),
                "videos": len(study["videos"]),
                "variants": ",".join(sorted({v["variant"] for video in study["videos"] for v in video["variants"]})),
                "lists": len(study["lists"]),
                "window_deg": float(study["window_deg"]),
            }
        )
    columns = ["study_id", "experiment_id", "design_sha256", "created_at", "videos", "variants", "lists", "window_deg"]
    return pd.DataFrame(rows, columns=columns)


def human_maps_path(layout: DataLayout, video_id: str, study_id: str) -> Any:
    """``artifacts/human_attention/<video_id>/<study_id>.human_maps.npz``."""
    study_dir(layout, study_id)  # validates the id
    return layout.artifact_dir("human_attention", video_id) / f"{study_id}.human_maps.npz"


def _masks(layout: DataLayout, video_id: str, video: dict[str, Any]) -> Any:
    path = layout.artifact("keyword_masks", "masks", video_id)
    if not path.exists():
        raise FileNotFoundError(f"video {video_id}: no product masks at {path}; materialize keyword_masks first")
    masks = load_keyword_masks(path).masks
    shape = tuple(np.asarray(masks[0]).shape)
    if len(masks) != int(video["n_frames"]) or shape != (int(video["height"]), int(video["width"])):
        raise ValueError(
            f"video {video_id}: the study shows {video['n_frames']} frames of {video['width']}x{video['height']}, "
            f"the product masks have {len(masks)} of {shape[1]}x{shape[0]}"
        )
    return masks


def _model_maps(layout: DataLayout, video_id: str, grid: VideoGrid) -> dict[str, np.ndarray]:
    """The stored attention maps pooled onto the human maps' grid, and the centre-bias reference."""
    h, w = grid.shape
    out = {CENTRE_BIAS_SCORER: np.repeat(centre_bias_map(h, w)[None], grid.n_frames, axis=0)}
    path = layout.artifact("attention_maps", "maps", video_id)
    if path.exists():
        maps = load_attention_maps(path)
        if maps.frame_count == grid.n_frames and maps.frame_size == (grid.height, grid.width):
            out[maps.scorer_id] = np.stack([grid.pool(maps.map_at(t)) for t in range(grid.n_frames)])
    return out


def video_human_stage(
    layout: DataLayout, video_id: str, cursor: pd.DataFrame, settings: HumanMapSettings | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-trial a_t, scorer card) of ``video_id`` over every study showing it; maps saved per study."""
    settings = settings or HumanMapSettings()
    trials, cards = [], []
    for study_id in sorted(set(cursor["study_id"])) if len(cursor) else []:
        study = load_collected_study(layout.root, study_id)
        video = next((v for v in study["videos"] if str(v["video_id"]) == video_id), None)
        if video is None:
            continue
        rows = cursor[cursor["study_id"] == study_id]
        result = video_human_attention(rows, video, study, _masks(layout, video_id, video), settings)
        save_human_maps(human_maps_path(layout, video_id, study_id), result)
        trials.append(result.trials.assign(study_id=study_id))
        names = sorted(result.maps)
        reference = "baseline" if "baseline" in names else names[0]
        humans = [(video_id, result.counts[reference], result.maps[reference])]
        card = scorer_card(humans, {k: {video_id: v} for k, v in _model_maps(layout, video_id, result.grid).items()})
        cards.append(card.assign(study_id=study_id, variant=reference))
    trial_frame = pd.concat(trials, ignore_index=True)[TRIAL_COLUMNS] if trials else pd.DataFrame(columns=TRIAL_COLUMNS)
    card_frame = pd.concat(cards, ignore_index=True)[CARD_COLUMNS] if cards else pd.DataFrame(columns=CARD_COLUMNS)
    return trial_frame, card_frame
