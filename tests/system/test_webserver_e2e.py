"""A real ``dagster-webserver``: launch a materialization over GraphQL and read its metadata back.

Proves that the repo's ``workspace.yaml`` loads in the webserver's code server, that a run
launched through the GraphQL API (the same mutation the UI's "Materialize" button uses) runs the
real ``video_catalog`` asset on the real ``help.mkv`` in a subprocess, and that the result the UI
shows (materialization metadata, asset-check results) is what the asset recorded.
"""

from __future__ import annotations

import pytest

from .conftest import VIDEO_FRAMES, CatalogRun, Webserver
from .servers import LOOPBACK, listening_addresses
from .ui_api import CHECKS_QUERY, MATERIALIZATION_QUERY, VIDEO_ID, run_errors

pytestmark = pytest.mark.system


def test_webserver_binds_loopback_only(dagster_webserver: Webserver) -> None:
    addresses = listening_addresses(dagster_webserver.port)
    assert addresses == {LOOPBACK}, f"webserver listens on {addresses}, expected only {LOOPBACK}"


def test_materialize_catalog_over_graphql(dagster_webserver: Webserver, catalog_run: CatalogRun) -> None:
    server, run_id, run = dagster_webserver, catalog_run.run_id, catalog_run.run
    assert run["status"] == "SUCCESS", f"run {run_id} {run['status']}:\n{run_errors(server, run_id)}"
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags.get("dagster/partition") == VIDEO_ID

    asset = server.graphql(MATERIALIZATION_QUERY, {"partition": VIDEO_ID})["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    (materialization,) = asset["assetMaterializations"]
    assert materialization["partition"] == VIDEO_ID
    assert materialization["runId"] == run_id
    entries = {entry["label"]: entry for entry in materialization["metadataEntries"]}
    assert entries["frame_count"]["intValue"] == VIDEO_FRAMES
    assert entries["resolution"]["text"] == "640x480"
    assert entries["keyword_verdict"]["__typename"] == "MarkdownMetadataEntry"
    assert entries["keyword_verdict"]["mdStr"].startswith("**"), entries["keyword_verdict"]
    assert {"scene_source", "video_sha256", "catalog_path", "fps"} <= set(entries)

    # The artifacts landed in the data directory the webserver was pointed at, not in ./data.
    catalog_path = entries["catalog_path"]["path"]
    assert catalog_path.startswith(str(server.data_dir / "artifacts" / "video_catalog" / VIDEO_ID)), catalog_path

    # The in-op asset checks were recorded against this materialization.
    checks = server.graphql(CHECKS_QUERY)["assetNodeOrError"]["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    by_name = {check["name"]: check["executionForLatestMaterialization"] for check in checks["checks"]}
    assert set(by_name) == {"scene_schema", "value_ranges", "scene_frame_consistency"}
    for name in ("scene_schema", "value_ranges"):
        assert by_name[name] is not None and by_name[name]["runId"] == run_id, (name, by_name[name])
        assert by_name[name]["evaluation"]["success"] is True, (name, by_name[name])
