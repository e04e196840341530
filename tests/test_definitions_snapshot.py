"""The asset graph as data, compared with a committed snapshot: a change to the graph is a visible diff.

For each profile's ``Definitions``: every asset (upstream keys, partitions, group, the resources
it requires, its checks), the resources (their class), sensors, schedules and jobs. When the
graph changes on purpose, regenerate the snapshot and commit it with the change::

    ALIGN_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py

then read ``git diff tests/snapshots/definitions.json``: it is the review of the graph change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(defs) -> dict:
    """A JSON-able description of ``defs`` (stable order, nothing machine-specific)."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": None
            if partitions is None
            else f"{type(partitions).__name__}({getattr(partitions, 'name', '')})",
            "group": node.group_name,
            "checks": sorted(check.name for check in node.check_keys),
        }
    required: dict[str, list[str]] = {}
    for assets_def in defs.assets or []:
        for key in assets_def.keys:
            required[key.to_user_string()] = sorted(assets_def.required_resource_keys)
    for name, entry in assets.items():
        entry["resources"] = required.get(name, [])
    return {
        "assets": assets,
        "asset_checks": sorted(
            f"{check.asset_key.to_user_string()}:{check.name}"
            for checks_def in (defs.asset_checks or [])
            for check in checks_def.check_keys
        ),
        "resources": {name: type(resource).__name__ for name, resource in sorted((defs.resources or {}).items())},
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
        "schedules": sorted(schedule.name for schedule in defs.schedules or []),
        "jobs": sorted(job.name for job in defs.jobs or []),
    }


def current(tmp_path: Path) -> dict:
    from align_assets.definitions import build_definitions
    from align_assets.resources import default_resources
    from align_core.io.layout import DataLayout
    from align_demo.provenance import record_demo_inputs

    # the demo profile's own graph exists only in a directory the demo made (a user's gets production's)
    demo = DataLayout(tmp_path / "demo").ensure()
    (demo.raw_dir / "demo_corpus.json").write_text("{}\n")
    record_demo_inputs(demo)

    return {
        profile: describe(build_definitions(default_resources(data_dir=tmp_path / profile, profile=profile)))
        for profile in ("demo", "research")
    }


def test_definitions_match_the_committed_snapshot(tmp_path: Path) -> None:
    now = current(tmp_path)
    if os.environ.get("ALIGN_UPDATE_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    if not SNAPSHOT.exists():
        pytest.fail(f"{SNAPSHOT} is missing: generate it with ALIGN_UPDATE_SNAPSHOT=1 (see this file's docstring)")
    committed = json.loads(SNAPSHOT.read_text())
    assert now == committed, (
        "the Definitions changed; if on purpose, regenerate with ALIGN_UPDATE_SNAPSHOT=1 and commit the diff of "
        f"{SNAPSHOT.relative_to(Path(__file__).parents[1])}"
    )


def test_the_profiles_differ_where_the_design_says(tmp_path: Path) -> None:
    """Only the demo has the simulated export; only an editor that reads the checkpoint depends on it."""
    now = current(tmp_path)
    demo, research = now["demo"]["assets"], now["research"]["assets"]
    assert "demo_ab_export" in demo and "demo_ab_export" not in research
    assert research["ab_results"]["deps"] == []
    assert "controlnet_checkpoint" not in demo["variant_videos"]["deps"]  # salience editor
    assert "controlnet_checkpoint" in research["variant_videos"]["deps"]  # controlnet editor
    assert demo["variant_quality"]["checks"] == [
        "information_preserved",
        "manipulation_passed",
        "perceptual_budget",
        "protected_unchanged",
    ]
    assert "scorer" in demo["attention_maps"]["resources"] and "scorer" in demo["variant_quality"]["resources"]
