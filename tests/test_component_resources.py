"""Scorer, segmenter and editor are resources built through one registry style.

The scorer is configured in one place (the ``scorer`` resource) and both the attention maps and
the manipulation check use it: swapping it for ``spectral_residual`` changes both together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from align_assets.definitions import all_assets
from align_assets.partitions import VIDEO_PARTITIONS_NAME
from align_assets.resources import ScorerResource, default_resources
from align_core.components import EditorChoice, Registry
from align_core.io.layout import DataLayout
from align_core.perception.attention import load_attention_maps
from align_core.perception.attention.scorers import SCORERS
from align_core.perception.masks import SEGMENTERS
from align_core.stimuli.editing.base import EDITORS
from align_demo.corpus import generate_demo_corpus

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

PER_VIDEO = [
    "video_catalog",
    "attention_maps",
    "keyword_masks",
    "control_tensors",
    "protected_regions",
    "variant_plans",
    "variant_videos",
    "variant_quality",
]
QUICK = {
    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    "ops": {
        "attention_maps": {"config": {"keyframe_stride": 12}},
        "variant_videos": {"config": {"calibration_frames": 2}},
        "variant_quality": {"config": {"measure_every": 6, "lpips_every": 1000}},
    },
}


def test_one_registry_style_for_every_component_kind() -> None:
    for registry, names in (
        (SCORERS, {"feature_richness", "spectral_residual", "llava", "provided"}),
        (SEGMENTERS, {"clipseg", "provided"}),
        (EDITORS, {"salience", "controlnet"}),
    ):
        assert isinstance(registry, Registry) and names <= set(registry.names())
        with pytest.raises(ValueError, match=f"unknown {registry.kind} 'nope'"):
            registry.build("nope")
    assert EDITORS.traits("controlnet") == {"needs_checkpoint": True} and EDITORS.traits("salience") == {}
    editor = EditorChoice(editor="salience").build(prompt="lipstick")
    assert (editor.propagation, editor.calibrates) == ("every_frame", True)
    with pytest.raises(FileNotFoundError, match="materialize controlnet_checkpoint"):
        EditorChoice(editor="controlnet").build(prompt="lipstick", checkpoint=None)


def _run(layout: DataLayout, instance, key: str, selection: list[str], scorer: ScorerResource):
    resources = default_resources(data_dir=layout.root, profile="demo", scorer=scorer)
    result = materialize(
        all_assets,
        selection=[AssetKey(a) for a in selection],
        partition_key=key,
        instance=instance,
        resources=resources,
        run_config={**QUICK, "ops": {k: v for k, v in QUICK["ops"].items() if k in selection}},
    )
    assert result.success
    maps = load_attention_maps(layout.artifact("attention_maps", "maps", key))
    check = pd.read_parquet(layout.artifact("variant_quality", "manipulation", key))
    event = instance.get_latest_materialization_event(AssetKey("variant_quality"))
    return maps, check, event.asset_materialization.metadata["measured_with"].value


@pytest.mark.slow
def test_swapping_the_scorer_resource_changes_the_maps_and_the_check_together(tmp_path) -> None:
    layout = DataLayout(tmp_path / "data").ensure()
    corpus = generate_demo_corpus(
        layout,
        n_videos=1,
        seed=5,
        width=144,
        height=256,
        duration_range_s=(4.0, 4.0),
        n_empty_keywords=0,
        n_cta_keywords=0,
        videos_without_scene_rows=0,
    )
    key = corpus.video_ids[0]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEO_PARTITIONS_NAME, [key])
        small = {"max_long_side": 128}
        before_maps, before_check, before_with = _run(layout, instance, key, PER_VIDEO, ScorerResource(**small))
        # one change, in one place: the scorer resource; attention and the check re-run, videos are kept
        after_maps, after_check, after_with = _run(
            layout,
            instance,
            key,
            ["attention_maps", "variant_quality"],
            ScorerResource(scorer="spectral_residual", **small),
        )
    assert before_maps.scorer_id.startswith("feature_richness") and after_maps.scorer_id.startswith("spectral_residual")
    assert (
        before_with == f"attention_map[{before_maps.scorer_id}]"
        and after_with == f"attention_map[{after_maps.scorer_id}]"
    )
    assert not np.allclose(before_maps.maps[:], after_maps.maps[:], atol=1e-3)
    merged = before_check.merge(after_check, on=["variant", "window"], suffixes=("_before", "_after"))
    assert len(merged) == len(before_check) > 0
    assert not np.allclose(merged["achieved_delta_before"], merged["achieved_delta_after"], atol=1e-4)


def test_overriding_the_warehouse_resource_redirects_ab_results_and_the_report(tmp_path) -> None:
    """ab_results and analysis_report write where the ``warehouse`` resource points, like every table."""
    import duckdb
    from dagster_duckdb import DuckDBResource

    from align_assets.assets.experiments import ab_results_asset, analysis_report
    from align_demo.ab_simulator import simulate_ab_export

    layout = DataLayout(tmp_path / "data").ensure()
    videos = pd.DataFrame({"video_id": [f"v{k:02d}" for k in range(12)], "industry": ["Beauty", "Food", "Home"] * 4})
    simulate_ab_export(videos, layout.ab_inbox_dir / "exp.csv", seed=3, days=3, impressions_per_arm=300)
    elsewhere = tmp_path / "elsewhere.duckdb"
    from align_core.experiments.config import ExperimentConfig, register_experiment_config

    register_experiment_config(elsewhere, ExperimentConfig("demo-exp-1"))  # the simulator's experiment id
    resources = {
        **default_resources(data_dir=layout.root, profile="research"),
        "warehouse": DuckDBResource(database=str(elsewhere)),
    }
    result = materialize([ab_results_asset(), analysis_report], resources=resources)
    assert result.success
    assert not layout.warehouse_path.exists()
    with duckdb.connect(str(elsewhere), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ab_results").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM analysis_lift").fetchone()[0] > 0
