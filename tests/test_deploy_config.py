"""The scale-out configuration in deploy/ loads and validates with Dagster's own config schemas.

No cluster, broker or database is needed: instance yamls are validated against the instance
schema and each configured class's schema (with the environment variables they name set), the
executor config against ``k8s_job_executor``'s and ``celery_executor``'s schemas, and the real
platform definitions are rebuilt on those executors. The live Postgres instance is proven in
tests/system/test_postgres_instance.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dagster import AssetsDefinition, Definitions, asset
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.config import pg_config
from dagster._serdes import class_from_code_pointer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
INSTANCE_YAMLS = ["dagster.postgres.yaml", "dagster.k8s.yaml"]

ENV = {
    "DAGSTER_PG_HOST": "postgres.example.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
    "ALIGN_IMAGE": "registry.example.com/align-platform:0.1.0",
    "ALIGN_K8S_NAMESPACE": "align",
    "DAGSTER_INSTANCE_CONFIG_MAP": "align-dagster-instance",
    "ALIGN_CELERY_BROKER": "redis://redis.example.internal:6379/0",
    "ALIGN_CELERY_BACKEND": "redis://redis.example.internal:6379/1",
}


@pytest.fixture()
def deploy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def scale_out():
    spec = importlib.util.spec_from_file_location("align_deploy_scale_out", DEPLOY / "scale_out.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _assert_valid(config_type, value, what: str) -> dict:
    result = process_config(config_type, value)
    assert result.success, f"{what}: " + "; ".join(error.message for error in result.errors)
    return result.value


@pytest.mark.parametrize("name", INSTANCE_YAMLS)
def test_instance_yaml_validates(name: str, tmp_path: Path, deploy_env: None) -> None:
    shutil.copyfile(DEPLOY / name, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # the instance schema, as DagsterInstance does
    assert custom_class is None
    assert config["telemetry"] == {"enabled": False}

    postgres = _assert_valid(pg_config(), config["storage"]["postgres"], f"{name} storage")
    from dagster_postgres.utils import get_conn_string

    url = get_conn_string(**postgres["postgres_db"])
    assert url == "postgresql+psycopg2://dagster:secret@postgres.example.internal:5432/dagster"
    # The named driver is installed (SQLAlchemy imports it when building an engine; no connection).
    import sqlalchemy

    assert sqlalchemy.create_engine(url).dialect.driver == "psycopg2"

    for role in ("run_coordinator", "run_launcher"):
        if role not in config:
            continue
        entry = config[role]
        cls = class_from_code_pointer(entry["module"], entry["class"])
        _assert_valid(cls.config_type(), entry.get("config", {}), f"{name} {role} {entry['class']}")


def test_k8s_instance_runs_in_pods_with_the_shared_volume(tmp_path: Path, deploy_env: None) -> None:
    from dagster_k8s import K8sRunLauncher

    shutil.copyfile(DEPLOY / "dagster.k8s.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    launcher = _assert_valid(K8sRunLauncher.config_type(), config["run_launcher"]["config"], "K8sRunLauncher")
    assert launcher["job_image"] == ENV["ALIGN_IMAGE"]
    assert launcher["job_namespace"] == ENV["ALIGN_K8S_NAMESPACE"]
    assert "ALIGN_DATA_DIR=/data" in launcher["env_vars"]
    assert {m["mount_path"] for m in launcher["volume_mounts"]} == {"/data"}


def test_executor_config_validates(scale_out, deploy_env: None) -> None:
    from dagster_celery import celery_executor
    from dagster_k8s import k8s_job_executor

    settings = scale_out.load_executor_settings()
    k8s_config = scale_out.k8s_executor_config(settings, ["variant_videos"])
    k8s = _assert_valid(k8s_job_executor.config_schema.config_type, k8s_config, "k8s_job_executor")
    assert k8s["job_namespace"] == "align" and k8s["job_image"] == ENV["ALIGN_IMAGE"]
    celery = _assert_valid(celery_executor.config_schema.config_type, settings["celery"], "celery_executor")
    assert celery["broker"] == ENV["ALIGN_CELERY_BROKER"]


@pytest.mark.parametrize(
    ("kind", "executor_name"), [("k8s", "align_k8s"), ("celery", "align_celery"), ("multiprocess", "multiprocess")]
)
def test_platform_definitions_load_on_each_executor(scale_out, kind: str, executor_name: str) -> None:
    from align_assets.definitions import defs as base

    defs = scale_out.scale_out_definitions(kind)
    Definitions.validate_loadable(defs)
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == executor_name
    # Same assets, checks and sensors as the one-machine definitions.
    assert set(defs.resolve_all_asset_keys()) == set(base.resolve_all_asset_keys())
    assert {s.name for s in defs.sensors} == {s.name for s in base.sensors}
    assert len(list(defs.resolve_asset_graph().asset_check_keys)) == len(
        list(base.resolve_asset_graph().asset_check_keys)
    )


def test_gpu_steps_get_gpu_pods_and_queue(scale_out) -> None:
    from dagster_k8s.job import get_user_defined_k8s_config

    from align_assets.definitions import defs as base

    settings = scale_out.load_executor_settings()
    tags = scale_out.gpu_op_tags(settings)

    @asset(pool="gpu", op_tags=tags)
    def diffusion_step() -> None:
        """A GPU step as the diffusion assets declare it (pool + op tags)."""

    @asset(pool="gpu")
    def pooled_only() -> None:
        """In the gpu pool without tags: still found, so the k8s executor gives it a GPU pod."""

    combined = Definitions(
        assets=[*base.assets, diffusion_step, pooled_only], sensors=base.sensors, resources=base.resources
    )
    gpu_steps = scale_out.gpu_step_names(combined.assets, settings)
    assert "diffusion_step" in gpu_steps and "pooled_only" in gpu_steps
    assert "video_catalog" not in gpu_steps

    per_step = scale_out.k8s_executor_config(settings, gpu_steps)["per_step_k8s_config"]
    for step in gpu_steps:
        pod = per_step[step]
        assert pod["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["pod_spec_config"][
            "tolerations"
        ]

    # The op tag parses with dagster-k8s's own reader into the same GPU pod config.
    user_config = get_user_defined_k8s_config(tags)
    assert user_config.container_config["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert user_config.pod_spec_config["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert tags["dagster-celery/queue"] == "gpu"
    assert json.loads(tags["dagster-k8s/config"]) == settings["gpu_step_k8s_config"]

    # The definitions with the GPU step load on both cluster executors, and the step keeps its tags.
    for kind in ("k8s", "celery"):
        defs = scale_out.scale_out_definitions(kind, base=combined, settings=settings)
        Definitions.validate_loadable(defs)
        job = defs.resolve_implicit_global_asset_job_def()
        node = job.graph.node_named("diffusion_step")
        assert node.tags["dagster-celery/queue"] == "gpu"
        assert "nvidia.com/gpu" in node.tags["dagster-k8s/config"]
        assert isinstance(defs.get_assets_def("diffusion_step"), AssetsDefinition)


def test_helm_values_point_at_the_same_definitions() -> None:
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["-f", "deploy/scale_out.py"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["ALIGN_EXECUTOR"] == "k8s" and env["ALIGN_DATA_DIR"] == "/data"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["telemetry"] == {"enabled": False}
    assert (REPO_ROOT / deployment["dagsterApiGrpcArgs"][1]).is_file()
