"""A Dagster instance on a real PostgreSQL, configured by the repo's ``deploy/dagster.postgres.yaml``.

Starts Debian's PostgreSQL on loopback, points the deploy config at it through its environment
variables, materializes the real ``video_catalog`` asset for the real ``help.mkv`` in-process,
and then reads Postgres directly (psycopg2, not Dagster) to prove the run, its materialization,
its checks and the dynamic partition are stored there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, VIDEO_FRAMES, Postgres, make_data_dir
from .ui_api import VIDEO_ID

pytestmark = pytest.mark.system

DEPLOY_YAML = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
DB_NAME = "dagster_align"


def test_postgres_backed_instance(
    postgres_server: Postgres, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import AssetKey, DagsterInstance, materialize
    from dagster._serdes import deserialize_value
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from align_assets.definitions import defs
    from align_assets.resources import default_resources

    admin = postgres_server.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    admin.close()

    monkeypatch.setenv("DAGSTER_PG_HOST", postgres_server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("DAGSTER_PG_USER", postgres_server.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", DB_NAME)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    data_dir = make_data_dir(tmp_path / "data", shared_data)

    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        instance.add_dynamic_partitions("videos", [VIDEO_ID])
        result = materialize(
            [defs.get_assets_def("video_catalog")],
            instance=instance,
            partition_key=VIDEO_ID,
            resources=default_resources(data_dir=data_dir),
            raise_on_error=True,
        )
        assert result.success
        run_id = result.run_id

    # A second, independent instance (as the webserver or another machine would open) sees it.
    with DagsterInstance.from_config(str(home)) as reader:
        event = reader.get_latest_materialization_event(AssetKey("video_catalog"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization.partition == VIDEO_ID

    # And it is really in Postgres: read the tables directly.
    conn = postgres_server.connect(DB_NAME)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("SUCCESS",)]

            cur.execute(
                "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'"
                " AND asset_key = %s AND partition = %s",
                (run_id, AssetKey("video_catalog").to_string(), VIDEO_ID),
            )
            rows = cur.fetchall()
            assert len(rows) == 1, rows
            materialization = deserialize_value(rows[0][0]).asset_materialization
            assert materialization.metadata["frame_count"].value == VIDEO_FRAMES
            assert "keyword_verdict" in materialization.metadata

            cur.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_CHECK_EVALUATION'",
                (run_id,),
            )
            assert cur.fetchone()[0] == 3

            cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'videos'")
            assert cur.fetchall() == [(VIDEO_ID,)]
    finally:
        conn.close()
