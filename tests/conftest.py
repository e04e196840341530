"""Shared fixtures: where the real data lives, offline model hubs, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: any accidental hub lookup fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALIGN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real keywords, real clips and real human fixations (read-only)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; clone the repo next to shared/ (see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def keywords_source(shared_data: Path) -> Path:
    """The original project's real ``keywords.csv`` (107,205 ads)."""
    return shared_data / "keywords.csv"


@pytest.fixture(autouse=True, scope="session")
def _small_torch_threads() -> None:
    try:
        import torch
    except ImportError:  # analysis-only environments
        return
    # Tiny test models gain nothing from threads and lose a lot when cores are shared.
    torch.set_num_threads(1)
