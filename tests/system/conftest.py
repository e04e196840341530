"""Fixtures for the system tests: the programs they need and a real Dagster webserver.

A missing program skips its tests with the command that installs it, except under ``CI=true``,
where a missing program fails the test: CI must prove these tests every time
(``.ci/install-system-deps.sh`` installs chromium, postgresql and redis-server).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .servers import LOOPBACK, ServerProcess, free_port, graphql, http_ok, start_server, wait_until
from .ui_api import VIDEO_ID, launch_catalog_run, wait_for_run

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INSTALL_HINT = "run .ci/install-system-deps.sh as root, or: apt-get install -y {package}"

#: dagster.yaml for the webserver's instance: no telemetry, no "join the community" pop-up
#: (it would cover the screenshots), runs launch immediately as subprocesses (no daemon needed).
WEBSERVER_INSTANCE_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""

#: The one real video every system test catalogues (``help.mkv``: a person signing, 640x480, 58 frames).
VIDEO_FRAMES = 58


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing_program(program: str, package: str) -> None:
    """Skip (laptop) or fail (CI=true) because ``program`` is not installed."""
    message = f"{program} not found: {INSTALL_HINT.format(package=package)}"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's headless-capable chromium (or a Chrome/Chromium found on PATH)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return Path(found)
    missing_program("chromium", "chromium")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres_bin() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl`` (newest installed version)."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in reversed(candidates):
        if all((directory / tool).exists() for tool in ("initdb", "postgres", "pg_ctl")):
            return directory
    missing_program("postgresql (initdb/postgres/pg_ctl)", "postgresql")
    raise AssertionError("unreachable")


def make_data_dir(root: Path, shared_data: Path) -> Path:
    """A data directory holding one real video as ``raw/videos/real-help.mkv``."""
    videos = root / "raw" / "videos"
    videos.mkdir(parents=True)
    shutil.copyfile(shared_data / "videos" / "help.mkv", videos / f"{VIDEO_ID}.mkv")
    return root


@dataclass
class Webserver:
    """A running ``dagster-webserver`` over the repo's workspace.yaml."""

    process: ServerProcess
    host: str
    port: int
    data_dir: Path
    dagster_home: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.graphql_url, query, variables)

    def log_tail(self) -> str:
        return self.process.log_tail()


def _location_loaded(server: Webserver) -> bool:
    try:
        data = server.graphql(
            "{ workspaceOrError { __typename ... on Workspace { locationEntries { name"
            " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
    except (OSError, RuntimeError):
        return False
    entries = data["workspaceOrError"].get("locationEntries") or []
    states = [entry["locationOrLoadError"] for entry in entries]
    errors = [state["message"] for state in states if state and state["__typename"] == "PythonError"]
    if errors:
        raise RuntimeError(f"code location failed to load: {errors[0][:3000]}")
    return bool(states) and all(state and state["__typename"] == "RepositoryLocation" for state in states)


@pytest.fixture(scope="session")
def dagster_webserver(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Webserver]:
    """A real ``dagster-webserver`` on 127.0.0.1:<free port>, shared by the webserver and browser tests.

    Its instance (sqlite, under a temp DAGSTER_HOME) knows the ``real-help`` partition; its data
    directory holds the real ``help.mkv``. Stopped by PID (whole process group) at the end.
    """
    from dagster import DagsterInstance

    root = tmp_path_factory.mktemp("webserver")
    data_dir = make_data_dir(root / "data", shared_data)
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(WEBSERVER_INSTANCE_YAML)

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("videos", [VIDEO_ID])

    executable = VENV_BIN / "dagster-webserver"
    if not executable.exists():
        pytest.fail(f"{executable} missing: install the project (dagster-webserver is a pinned dependency)")
    port = free_port()
    env = {
        **os.environ,
        "ALIGN_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = start_server(
        "dagster-webserver",
        [str(executable), "-w", str(REPO_ROOT / "workspace.yaml"), "-h", LOOPBACK, "-p", str(port)],
        log_path=root / "webserver.log",
        env=env,
        cwd=REPO_ROOT,
    )
    server = Webserver(process=process, host=LOOPBACK, port=port, data_dir=data_dir, dagster_home=dagster_home)
    try:
        wait_until(
            lambda: http_ok(f"{server.url}/server_info"),
            timeout=90,
            alive=process.alive,
            what="dagster-webserver /server_info",
            on_fail=process.log_tail,
        )
        wait_until(
            lambda: _location_loaded(server),
            timeout=90,
            interval=0.5,
            alive=process.alive,
            what="code location align_assets.definitions loaded",
            on_fail=process.log_tail,
        )
        yield server
    finally:
        process.stop(timeout=20)


@dataclass(frozen=True)
class CatalogRun:
    run_id: str
    run: dict
    seconds: float


@pytest.fixture(scope="session")
def catalog_run(dagster_webserver: Webserver) -> CatalogRun:
    """``video_catalog`` for ``real-help`` launched through GraphQL and waited for (once per session).

    Shared so the browser tests see a materialized asset (metadata, checks) in the UI.
    """
    import time

    started = time.monotonic()
    run_id = launch_catalog_run(dagster_webserver)
    run = wait_for_run(dagster_webserver, run_id)
    return CatalogRun(run_id=run_id, run=run, seconds=time.monotonic() - started)


@dataclass
class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, superuser ``postgres``)."""

    process: ServerProcess
    host: str
    port: int
    user: str
    bin_dir: Path
    data_dir: Path

    def connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname, connect_timeout=5)


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        pytest.fail("running as root without runuser: cannot start postgres as the postgres user")
    return [runuser, "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def postgres_server(postgres_bin: Path) -> Iterator[Postgres]:
    """initdb + postgres in a temp dir, loopback only, on a free port; stopped with pg_ctl and by PID."""
    import pwd
    import subprocess
    import tempfile

    # Not under pytest's basetemp: that is mode 0700 for root, and postgres must reach its data dir.
    root = Path(tempfile.mkdtemp(prefix="align-pg-"))
    as_user = _as_postgres_user()
    if as_user:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail("no 'postgres' system user (Debian's postgresql package creates it)")
        os.chown(root, account.pw_uid, account.pw_gid)
    data_dir = root / "pgdata"
    init = subprocess.run(
        [
            *as_user,
            str(postgres_bin / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}):\n{init.stdout[-2000:]}\n{init.stderr[-2000:]}")
    port = free_port()
    process = start_server(
        "postgres",
        [
            *as_user,
            str(postgres_bin / "postgres"),
            "-D",
            str(data_dir),
            "-k",
            str(root),
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            # A test database: durability is not the point, speed on 2 shared cores is.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        log_path=root / "postgres.log",
    )
    server = Postgres(
        process=process, host=LOOPBACK, port=port, user="postgres", bin_dir=postgres_bin, data_dir=data_dir
    )

    def accepting() -> bool:
        try:
            server.connect().close()
            return True
        except Exception:  # noqa: BLE001 - psycopg2.OperationalError until the server is up
            return False

    try:
        wait_until(
            accepting, timeout=60, alive=process.alive, what="postgres accepting connections", on_fail=process.log_tail
        )
        yield server
    finally:
        try:
            subprocess.run(
                [
                    *as_user,
                    str(postgres_bin / "pg_ctl"),
                    "stop",
                    "-D",
                    str(data_dir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "20",
                ],
                capture_output=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            pass
        process.stop(timeout=10)  # whatever pg_ctl left behind: the whole process group, by PID
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    """A throwaway Redis server on 127.0.0.1 (no persistence), the Celery broker and result backend."""

    process: ServerProcess
    host: str
    port: int

    def url(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


@pytest.fixture(scope="session")
def redis_server_path() -> Path:
    """Debian's ``redis-server`` (package ``redis-server``)."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if found:
        return Path(found)
    missing_program("redis-server", "redis-server")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_server(redis_server_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """``redis-server`` on 127.0.0.1:<free port>, nothing written to disk; stopped by PID."""
    import socket

    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [str(redis_server_path), "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no"]
    process = start_server("redis-server", [*argv, "--dir", str(root)], log_path=root / "redis.log")

    def answers_ping() -> bool:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(answers_ping, timeout=30, alive=process.alive, what="redis-server PONG", on_fail=process.log_tail)
        yield Redis(process=process, host=LOOPBACK, port=port)
    finally:
        process.stop(timeout=10)
