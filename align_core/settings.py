"""Profiles and the data directory: one switch each, read from the environment by default.

``ALIGN_PROFILE`` picks ``demo`` (CPU, no downloads, tiny models, provided masks, weight-free
scorer, salience editor) or ``research`` (GPU, SD 1.5, CLIPSeg, LLaVA from local paths,
ControlNet editor). ``ALIGN_DATA_DIR`` moves every input and output (default ``./data``).
Dagster resources carry the same two fields, so the UI can override them per run.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CODE_LOCATIONS",
    "PROFILE_DEFAULTS",
    "ProfileDefaults",
    "add_data_dir_argument",
    "code_location_module",
    "data_dir_from_env",
    "profile_from_env",
]

Profile = Literal["demo", "research"]
PROFILES: tuple[str, ...] = ("demo", "research")

DEFAULT_DATA_DIR = "data"


def data_dir_from_env() -> Path:
    return Path(os.environ.get("ALIGN_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` with the one default every CLI shares: ``$ALIGN_DATA_DIR``, else ``./data``."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=data_dir_from_env(),
        help="the data directory (default: $ALIGN_DATA_DIR, else ./data)",
    )


def profile_from_env() -> Profile:
    profile = os.environ.get("ALIGN_PROFILE", "demo").strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"ALIGN_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    return profile  # type: ignore[return-value]


@dataclass(frozen=True)
class ProfileDefaults:
    """Which implementation each pluggable stage uses under a profile."""

    patch_scorer: str
    segmenter: str
    editor: str
    backbone: str
    device: str


PROFILE_DEFAULTS: dict[str, ProfileDefaults] = {
    "demo": ProfileDefaults(
        patch_scorer="feature_richness", segmenter="provided", editor="salience", backbone="tiny", device="cpu"
    ),
    "research": ProfileDefaults(
        patch_scorer="llava", segmenter="clipseg", editor="controlnet", backbone="pretrained", device="cuda"
    ),
}

#: The module that builds each profile's Dagster ``Definitions`` (its ``build_definitions(resources)``),
#: loaded by name by ``align_assets.definitions``: the demo extends production with demo-only assets.
CODE_LOCATIONS: dict[str, str] = {
    "demo": "align_demo.definitions",
    "research": "align_assets.production",
}


def code_location_module(profile: str) -> str:
    """The module whose ``build_definitions`` gives ``profile``'s Definitions."""
    if profile not in CODE_LOCATIONS:
        raise ValueError(f"profile {profile!r} is not one of {sorted(CODE_LOCATIONS)}")
    return CODE_LOCATIONS[profile]
