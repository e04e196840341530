"""The documented partitioning for labs past 100,000 videos: arrival batches (align_assets.large_corpus)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, Definitions, materialize

from align_assets.large_corpus import (
    VIDEO_BATCHES_NAME,
    batch_keys,
    batched_asset,
    defs,
    read_batch,
    register_batches,
)
from align_assets.resources import PlatformResource
from align_core.io.atomic import atomic_write_text
from align_core.io.layout import DataLayout

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow


def test_large_corpus_definitions_load_and_hold_the_real_corpus_in_108_batches(
    shared_data: Path, tmp_path: Path
) -> None:
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {node.key.to_user_string() for node in graph.asset_nodes if node.is_materializable} == {
        "attention_maps",
        "variant_plans",
    }
    ids = pd.read_csv(shared_data / "keywords.csv", dtype=str, usecols=["_id"])["_id"].drop_duplicates().tolist()
    assert len(ids) > 100_000
    batches = batch_keys(ids, date(2026, 11, 25))
    assert len(batches) == -(-len(ids) // 1000) and sum(len(v) for v in batches.values()) == len(ids)
    assert next(iter(batches)) == "2026-11-25-0000"
    layout = DataLayout(tmp_path / "data").ensure()
    with DagsterInstance.ephemeral() as instance:
        register_batches(layout, batches, instance)
        assert len(instance.get_dynamic_partitions(VIDEO_BATCHES_NAME)) == len(batches)
    assert read_batch(layout, "2026-11-25-0107") == ids[107_000:108_000]
    with pytest.raises(ValueError, match="already exists"):
        register_batches(layout, {"2026-11-25-0000": ids[5:10]})


def test_batched_asset_runs_every_video_and_isolates_failures(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()

    def run_video(platform: PlatformResource, video_id: str) -> dict:
        if video_id == "bad":
            raise ValueError(f"video {video_id}: unreadable")
        out = platform.layout.artifact_dir("stage", video_id)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "done.txt", video_id)
        return {}

    stage = batched_asset("stage", [], run_video, done_file="done.txt")
    register_batches(layout, batch_keys(["a", "bad", "c"], date(2026, 1, 2), batch_size=3))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_BATCHES_NAME, ["2026-01-02-0000"])
        resources = {"platform": PlatformResource(data_dir=str(layout.root))}
        result = materialize([stage], partition_key="2026-01-02-0000", instance=instance, resources=resources)
        assert result.success
        meta = result.asset_materializations_for_node("stage")[0].metadata
        assert meta["materialized"].value == 2 and meta["failed"].value == 1
        assert "unreadable" in str(meta["failures"].value)
        again = materialize([stage], partition_key="2026-01-02-0000", instance=instance, resources=resources)
        meta = again.asset_materializations_for_node("stage")[0].metadata
        assert meta["already_done"].value == 2 and meta["materialized"].value == 0
