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
    ("kind", "executor_name"),
    [
        ("k8s", "align_k8s"),
        ("celery", "align_celery"),
        ("multiprocess", "align_multiprocess"),
        ("multiprocess_spawn", "multiprocess"),
        ("in_process", "in_process"),
    ],
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


# --- Pods rendered by dagster-k8s's own classes from the shipped files (no cluster) -------------

#: A kubeconfig that is parsed but never contacted: the pods are only constructed, not created.
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""
RUN_POD_RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}


def _k8s_instance(tmp_path: Path, launcher_config: dict):
    """A real DagsterInstance whose run launcher is a K8sRunLauncher built from ``launcher_config``.

    Storage stays SQLite in ``tmp_path`` (Postgres is proven in tests/system); only the
    launcher's way of reaching the cluster changes, to the unreachable kubeconfig above.
    """
    from dagster import DagsterInstance

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    config = {**launcher_config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    home = tmp_path / "home"
    home.mkdir()
    instance_yaml = {"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    return DagsterInstance.from_config(str(home))


def _plain_launcher_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.k8s.yaml").read_text())["run_launcher"]["config"]


def _helm_launcher_config() -> dict:
    """The K8sRunLauncher config the Dagster chart writes from helm-values.yaml (its key names mapped)."""
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    helm = values["runLauncher"]["config"]["k8sRunLauncher"]
    plain = _plain_launcher_config()
    return {
        # the chart's own settings for these (dagster home, instance ConfigMap, service account)
        **{key: plain[key] for key in ("job_image", "job_namespace", "instance_config_map", "service_account_name")},
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_vars": helm.get("envVars", []),
        "volumes": helm.get("volumes", []),
        "volume_mounts": helm.get("volumeMounts", []),
        "run_k8s_config": {"container_config": (helm.get("runK8sConfig") or {}).get("containerConfig", {})},
    }


def _container(job) -> tuple:
    spec = job.spec.template.spec
    (container,) = spec.containers
    env = {item.name: item.value for item in container.env or []}
    return spec, container, env


def _render_run_pod(instance):
    """The run worker Job exactly as K8sRunLauncher._launch_k8s_job_with_args builds it."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.job import construct_dagster_k8s_job

    launcher = instance.run_launcher
    run = DagsterRun(job_name="__ASSET_JOB", run_id="6f1c2e9a-0000-4000-8000-000000000001")
    context = launcher.get_container_context_for_run(run)
    job_config = context.get_k8s_job_config(job_image=None, run_launcher=launcher)
    return construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-test",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )


def _render_step_pod(instance, scale_out, step: str):
    """A step Job exactly as the k8s executor's K8sStepHandler.launch_step builds it.

    The handler is created by ``k8s_job_executor`` itself from the executor config of
    ``scale_out.py`` (as the run pod resolves it from its environment) and the instance's launcher.
    """
    from types import SimpleNamespace

    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.job import construct_dagster_k8s_job

    defs = scale_out.scale_out_definitions()  # ALIGN_EXECUTOR from the environment, as in the run pod
    job_def = defs.resolve_implicit_global_asset_job_def()
    assert job_def.executor_def.name == "align_k8s", f"run pod env gives the {job_def.executor_def.name} executor"
    mapped = job_def.executor_def.apply_config_mapping({})  # the configured executor resolves {env: ...} here
    assert mapped.success, [error.message for error in mapped.errors]
    executor_config = _assert_valid(k8s_job_executor.config_schema.config_type, mapped.value["config"], "k8s executor")
    executor = k8s_job_executor.executor_creation_fn(
        InitExecutorContext(
            job=InMemoryJob(job_def), executor_def=k8s_job_executor, executor_config=executor_config, instance=instance
        )
    )
    handler = executor._step_handler
    run = DagsterRun(job_name=job_def.name, run_id="6f1c2e9a-0000-4000-8000-000000000002")
    tags = dict(job_def.graph.node_named(step).tags)
    context = handler._get_container_context(
        SimpleNamespace(
            execute_step_args=SimpleNamespace(step_keys_to_execute=[step]),
            dagster_run=run,
            instance=instance,
            step_tags={step: tags},
            get_step_context=lambda key: SimpleNamespace(step=SimpleNamespace(op_name=key)),
        )
    )
    job_config = context.get_k8s_job_config(handler._executor_image, instance.run_launcher)
    return construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{step.replace('_', '-')}",
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )


@pytest.mark.parametrize("source", ["dagster.k8s.yaml", "helm-values.yaml"])
def test_run_pod_orchestrates_with_the_k8s_executor(source: str, tmp_path: Path, deploy_env: None) -> None:
    config = _plain_launcher_config() if source == "dagster.k8s.yaml" else _helm_launcher_config()
    with _k8s_instance(tmp_path, config) as instance:
        spec, container, env = _container(_render_run_pod(instance))
    assert container.image == ENV["ALIGN_IMAGE"]
    assert env["ALIGN_EXECUTOR"] == "k8s", f"{source}: the run pod would run every step itself (multiprocess)"
    assert env["ALIGN_IMAGE"] == ENV["ALIGN_IMAGE"] and env["ALIGN_K8S_NAMESPACE"] == ENV["ALIGN_K8S_NAMESPACE"]
    assert env["ALIGN_DATA_DIR"] == "/data"
    assert container.resources.to_dict()["requests"] == RUN_POD_RESOURCES["requests"], source
    assert container.resources.to_dict()["limits"] == RUN_POD_RESOURCES["limits"], source
    assert not (container.resources.limits or {}).get("nvidia.com/gpu")
    password = next(item for item in container.env if item.name == "DAGSTER_PG_PASSWORD")
    assert password.value_from.secret_key_ref.name == "align-dagster-postgres"
    assert password.value_from.secret_key_ref.key == "postgresql-password"
    assert {mount.mount_path for mount in container.volume_mounts} >= {"/data"}


@pytest.mark.parametrize("step", ["controlnet_checkpoint", "video_catalog"])
def test_step_pods_from_the_run_pods_environment(
    step: str, scale_out, tmp_path: Path, deploy_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside the run pod, scale_out.py (with that pod's env only) gives GPU and CPU step pods."""
    with _k8s_instance(tmp_path, _plain_launcher_config()) as instance:
        _, _, run_env = _container(_render_run_pod(instance))
        for key in ("ALIGN_EXECUTOR", "ALIGN_IMAGE", "ALIGN_K8S_NAMESPACE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in run_env.items():
            if key.startswith("ALIGN_") and value is not None:
                monkeypatch.setenv(key, value)
        spec, container, env = _container(_render_step_pod(instance, scale_out, step))
    assert container.image == ENV["ALIGN_IMAGE"]
    assert env["ALIGN_DATA_DIR"] == "/data"
    resources = container.resources.to_dict()
    if step == "controlnet_checkpoint":
        assert str(resources["limits"]["nvidia.com/gpu"]) == "1" and resources["requests"]["memory"] == "24Gi"
        assert spec.node_selector == {"nvidia.com/gpu.present": "true"}
        assert [(t.key, t.operator, t.effect) for t in spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    else:
        assert "nvidia.com/gpu" not in resources["limits"] and resources["requests"] == {"cpu": "1", "memory": "2Gi"}
        assert not spec.node_selector and not spec.tolerations


def test_helm_values_agree_with_the_instance_yaml() -> None:
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    plain = yaml.safe_load((DEPLOY / "dagster.k8s.yaml").read_text())
    assert values["postgresql"]["postgresqlScheme"] == plain["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["global"]["postgresqlSecretName"] == plain["run_launcher"]["config"]["postgres_password_secret"]
    # deploy/README.md tells you to create that Secret: the chart must not create one of the same name.
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "align-dagster-postgres" in (DEPLOY / "README.md").read_text()
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"]["defaultLimit"] == plain["concurrency"]["pools"]["default_limit"]
    assert concurrency["runs"]["maxConcurrentRuns"] == plain["concurrency"]["runs"]["max_concurrent_runs"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_env = {item["name"]: item["value"] for item in deployment["env"]}
    run_env = dict(item.split("=", 1) for item in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"])
    for key in ("ALIGN_EXECUTOR", "ALIGN_IMAGE", "ALIGN_K8S_NAMESPACE", "ALIGN_DATA_DIR", "ALIGN_PROFILE"):
        assert run_env[key] == code_env[key], key
    image = deployment["image"]
    assert run_env["ALIGN_IMAGE"] == f"{image['repository']}:{image['tag']}"


def test_multiprocess_steps_fork_from_a_preloaded_server(scale_out) -> None:
    """Steps fork from a server that imported the platform once instead of re-importing it per step."""
    job = scale_out.scale_out_definitions("multiprocess").resolve_implicit_global_asset_job_def()
    mapped = job.executor_def.apply_config_mapping({})
    assert mapped.success
    assert mapped.value["config"]["start_method"] == {"forkserver": {"preload_modules": ["align_assets.definitions"]}}


def test_celery_worker_yaml_is_the_executors_config(scale_out, deploy_env: None) -> None:
    """The workers' ``-y`` file holds the executor's Celery block, read as ``dagster-celery worker start`` reads it."""
    from dagster_celery.cli import get_config_value_from_yaml, get_validated_config

    worker_yaml = str(DEPLOY / "celery-worker.yaml")
    assert get_config_value_from_yaml(worker_yaml) == scale_out.load_executor_settings()["celery"]
    config = get_validated_config(worker_yaml)  # the CLI's own parse: {env: ...} resolved
    assert config["broker"] == ENV["ALIGN_CELERY_BROKER"] and config["backend"] == ENV["ALIGN_CELERY_BACKEND"]
    assert config["config_source"]["task_default_queue"] == "dagster"
    readme = (DEPLOY / "README.md").read_text()
    assert "-y deploy/celery-worker.yaml -q dagster" in readme and "-y deploy/celery-worker.yaml -q gpu" in readme
    assert "worker start -A dagster_celery.app -q" not in readme  # the form that ignores the broker settings


def test_redis_client_is_installed_for_celerys_redis_transport() -> None:
    """kombu's Redis transport needs the ``redis`` package; without it a worker dies with ``'NoneType' ... 'Redis'``."""
    from kombu.transport import redis as redis_transport

    assert redis_transport.redis is not None, "pip install the pinned redis client (pyproject.toml)"
