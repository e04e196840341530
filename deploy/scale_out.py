"""The platform's one ``Definitions`` on a cluster executor, chosen by ``ALIGN_EXECUTOR``.

    ALIGN_EXECUTOR=k8s     dagster_k8s.k8s_job_executor: one Kubernetes pod per step; GPU steps
                           get ``nvidia.com/gpu`` limits, a GPU node selector and a toleration
    ALIGN_EXECUTOR=celery  dagster_celery.celery_executor: steps as Celery tasks; GPU steps
                           carrying the GPU op tags go to the ``gpu`` queue
    (unset)                Dagster's multiprocess executor, as on a laptop

Point a workspace at this file instead of ``align_assets.definitions``::

    load_from:
      - python_file: {relative_path: deploy/scale_out.py, attribute: defs, working_directory: .}

Assets, checks, sensors, resources and ``align_core`` are the same objects as on one machine;
only the executor (and the instance yaml, image and volumes; see deploy/README.md) change.
Executor settings live in ``deploy/executors.yaml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetsDefinition, Definitions, ExecutorDefinition, multiprocess_executor

EXECUTORS_YAML = Path(__file__).resolve().with_name("executors.yaml")
EXECUTOR_ENV = "ALIGN_EXECUTOR"
GPU_POOL = "gpu"
K8S_CONFIG_TAG = "dagster-k8s/config"
CELERY_QUEUE_TAG = "dagster-celery/queue"


def load_executor_settings(path: str | Path = EXECUTORS_YAML) -> dict[str, Any]:
    settings = yaml.safe_load(Path(path).read_text())
    missing = {"k8s", "celery", "gpu_step_k8s_config", "celery_gpu_queue"} - set(settings)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}")
    return settings


def gpu_op_tags(settings: Mapping[str, Any]) -> dict[str, str]:
    """Op tags that put a step on a GPU: pod config for k8s, the GPU queue for Celery.

    Use as ``@asset(pool="gpu", op_tags=gpu_op_tags(...))`` on the diffusion steps.
    """
    return {
        K8S_CONFIG_TAG: json.dumps(settings["gpu_step_k8s_config"], sort_keys=True),
        CELERY_QUEUE_TAG: str(settings["celery_gpu_queue"]),
    }


def _carries_gpu_tags(tags: Mapping[str, str]) -> bool:
    return tags.get(CELERY_QUEUE_TAG) == GPU_POOL or "nvidia.com/gpu" in tags.get(K8S_CONFIG_TAG, "")


def gpu_step_names(assets: Iterable[object], settings: Mapping[str, Any]) -> list[str]:
    """Op names of the executable assets that need a GPU (named, in the gpu pool, or GPU-tagged)."""
    named = set(settings.get("gpu_steps") or [])
    found = set()
    for asset in assets:
        if not isinstance(asset, AssetsDefinition) or not asset.is_executable:
            continue
        node = asset.node_def
        if node.name in named or getattr(node, "pool", None) == GPU_POOL or _carries_gpu_tags(node.tags or {}):
            found.add(node.name)
    return sorted(found)


def k8s_executor_config(settings: Mapping[str, Any], gpu_steps: Iterable[str]) -> dict[str, Any]:
    """The k8s executor's config: the repo's defaults plus the GPU pod config for each GPU step."""
    config = dict(settings["k8s"])
    config["per_step_k8s_config"] = {
        **dict(config.get("per_step_k8s_config") or {}),
        **{step: settings["gpu_step_k8s_config"] for step in gpu_steps},
    }
    return config


def k8s_executor(settings: Mapping[str, Any], gpu_steps: Iterable[str]) -> ExecutorDefinition:
    """``k8s_job_executor`` configured by :func:`k8s_executor_config`."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(k8s_executor_config(settings, gpu_steps), name="align_k8s")


def celery_executor_def(settings: Mapping[str, Any]) -> ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor.configured(dict(settings["celery"]), name="align_celery")


def with_executor(base: Definitions, executor: ExecutorDefinition) -> Definitions:
    """The same definitions (assets, checks, jobs, sensors, schedules, resources) on ``executor``."""
    return Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        schedules=base.schedules,
        sensors=base.sensors,
        jobs=base.jobs,
        resources=base.resources,
        loggers=base.loggers,
        metadata=base.metadata,
        executor=executor,
    )


def scale_out_definitions(
    kind: str | None = None, base: Definitions | None = None, settings: Mapping[str, Any] | None = None
) -> Definitions:
    """``base`` (default: ``align_assets.definitions.defs``) on the executor named by ``kind``."""
    if base is None:
        from align_assets.definitions import defs as base
    settings = settings if settings is not None else load_executor_settings()
    kind = (kind if kind is not None else os.environ.get(EXECUTOR_ENV, "multiprocess")).strip().lower()
    if kind == "k8s":
        executor = k8s_executor(settings, gpu_step_names(base.assets or [], settings))
    elif kind == "celery":
        executor = celery_executor_def(settings)
    elif kind in ("", "multiprocess"):
        executor = multiprocess_executor
    else:
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected k8s, celery or multiprocess")
    return with_executor(base, executor)


defs = scale_out_definitions()
