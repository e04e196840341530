"""The platform's one ``Definitions`` on a cluster executor, chosen by ``ALIGN_EXECUTOR``.

    ALIGN_EXECUTOR=k8s     dagster_k8s.k8s_job_executor: one Kubernetes pod per step; GPU steps
                           get ``nvidia.com/gpu`` limits, a GPU node selector and a toleration
    ALIGN_EXECUTOR=celery  dagster_celery.celery_executor: steps as Celery tasks; GPU steps
                           carrying the GPU op tags go to the ``gpu`` queue
    ALIGN_EXECUTOR=in_process  every step in the run's own process (no per-step process start;
                           the reference a scaled-out run is compared with)
    (unset)                Dagster's multiprocess executor, as on a laptop, with its steps forked
                           from a server that imported the platform once (``multiprocess_spawn``:
                           Dagster's default, a fresh interpreter per step)

Point a workspace at this file instead of ``align_assets.definitions``::

    load_from:
      - python_file: {relative_path: deploy/scale_out.py, attribute: defs, working_directory: .}

Assets, checks, sensors, resources and ``align_core`` are the same objects as on one machine;
only the executor (and the instance yaml, image and volumes; see deploy/README.md) change.
Executor settings live in ``deploy/executors.yaml``.

A backfill through these definitions, on the executor named by ``ALIGN_EXECUTOR``, with the
instance under ``$DAGSTER_HOME`` (e.g. ``dagster.postgres.yaml``)::

    python deploy/scale_out.py backfill VIDEO_ID [VIDEO_ID ...] [--config-json '{"ops": {...}}']

It runs the same dependency waves as ``align-backfill`` (one run per video for the per-video
assets, then one run for the unpartitioned ones, and so on), but each run goes through
``execute_job`` so the configured executor (Celery, Kubernetes) runs its steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetsDefinition, Definitions, ExecutorDefinition, in_process_executor, multiprocess_executor

__all__ = [
    "asset_waves",
    "backfill",
    "celery_executor_def",
    "gpu_op_tags",
    "gpu_step_names",
    "k8s_executor",
    "k8s_executor_config",
    "load_executor_settings",
    "main",
    "preloaded_multiprocess_executor",
    "scale_out_definitions",
    "with_executor",
]

THIS_FILE = Path(__file__).resolve()
REPO_ROOT = THIS_FILE.parents[1]
EXECUTORS_YAML = THIS_FILE.with_name("executors.yaml")
PARTITION_TAG = "dagster/partition"
#: Imported once by a process that forks step processes (multiprocess forkserver, Celery workers).
PRELOAD_MODULES = ("align_assets.definitions",)
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


def preloaded_multiprocess_executor() -> ExecutorDefinition:
    """Dagster's multiprocess executor, each step forked from a server that imported the platform once.

    Dagster's default (``spawn``) starts every step in a fresh interpreter that imports the whole
    platform again (about 8-10 s of imports per step here; see bench/bench_scale_out.py).
    """
    return multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": list(PRELOAD_MODULES)}}}, name="align_multiprocess"
    )


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
        executor = preloaded_multiprocess_executor()
    elif kind == "multiprocess_spawn":
        executor = multiprocess_executor
    elif kind == "in_process":
        executor = in_process_executor
    else:
        raise ValueError(
            f"{EXECUTOR_ENV}={kind!r}: expected k8s, celery, multiprocess, multiprocess_spawn or in_process"
        )
    return with_executor(base, executor)


def asset_waves(graph: Any, names: Iterable[str] | None = None) -> list[tuple[bool, set[Any]]]:
    """The materializable assets of ``graph`` (or only ``names``) in dependency waves: ``(partitioned, keys)``.

    A wave takes every remaining asset of one kind (per-video first) whose remaining upstream
    assets are all in the wave, as ``align_assets.runner`` does for the one-machine runs.
    """
    remaining = set(graph.materializable_asset_keys)
    if names is not None:
        wanted = set(names)
        unknown = wanted - {key.to_user_string() for key in remaining}
        if unknown:
            raise ValueError(f"unknown asset(s) {', '.join(sorted(unknown))}")
        remaining = {key for key in remaining if key.to_user_string() in wanted}
    waves: list[tuple[bool, set[Any]]] = []
    while remaining:
        for partitioned in (True, False):
            wave = {key for key in remaining if (graph.get(key).partitions_def is not None) == partitioned}
            while True:
                blocked = {key for key in wave if any(p in remaining - wave for p in graph.get(key).parent_keys)}
                if not blocked:
                    break
                wave -= blocked
            if wave:
                waves.append((partitioned, wave))
                remaining -= wave
                break
        else:
            raise RuntimeError(f"cannot order assets {sorted(k.to_user_string() for k in remaining)}")
    return waves


def _wave_run_config(run_config: Mapping[str, Any], keys: set[Any]) -> dict[str, Any]:
    """``run_config`` with only the ``ops`` entries of the assets in this wave."""
    names = {key.to_user_string() for key in keys}
    ops = {name: value for name, value in (run_config.get("ops") or {}).items() if name in names}
    return {**run_config, "ops": ops} if ops else {k: v for k, v in run_config.items() if k != "ops"}


def _register_dynamic_partitions(instance: Any, graph: Any, partition_keys: list[str]) -> None:
    from dagster import DynamicPartitionsDefinition

    names = {
        node.partitions_def.name
        for node in (graph.get(key) for key in graph.materializable_asset_keys)
        if isinstance(node.partitions_def, DynamicPartitionsDefinition) and node.partitions_def.name
    }
    for name in sorted(names):
        known = set(instance.get_dynamic_partitions(name))
        new = [key for key in partition_keys if key not in known]
        if new:
            instance.add_dynamic_partitions(name, new)


def backfill(
    partition_keys: list[str],
    *,
    instance: Any,
    run_config: Mapping[str, Any] | None = None,
    assets: Iterable[str] | None = None,
    log: Any = print,
) -> list[tuple[str, str, bool]]:
    """Materialize every asset of this file's ``defs`` (or only ``assets``) over ``partition_keys``, wave by wave.

    Each run is launched with ``execute_job`` on a reconstructable job that points at this file,
    so the executor of ``defs`` (``ALIGN_EXECUTOR``) runs the steps wherever it runs them.
    Returns ``(label, run_id, success)`` per run.
    """
    from dagster import execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    recon_repo = ReconstructableRepository.for_file(str(THIS_FILE), "defs", working_directory=str(REPO_ROOT))
    repo = recon_repo.get_definition()
    _register_dynamic_partitions(instance, repo.asset_graph, partition_keys)
    results: list[tuple[str, str, bool]] = []
    for partitioned, keys in asset_waves(repo.asset_graph, assets):
        job_def = repo.get_implicit_job_def_for_assets(keys)
        if job_def is None:
            raise RuntimeError(f"no implicit job holds {sorted(k.to_user_string() for k in keys)}")
        recon_job = recon_repo.get_reconstructable_job(job_def.name)
        config = _wave_run_config(run_config or {}, keys)
        for label in partition_keys if partitioned else ["(unpartitioned)"]:
            tags = {PARTITION_TAG: label} if partitioned else {}
            with execute_job(recon_job, instance, run_config=config, tags=tags, asset_selection=sorted(keys)) as result:
                results.append((label, result.run_id, result.success))
            log(f"{label:<40} run {result.run_id} {'ok' if result.success else 'FAILED'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/scale_out.py", description="Backfill on the ALIGN_EXECUTOR executor.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("backfill", help="materialize every asset for these video partitions")
    run.add_argument("partitions", nargs="+", metavar="VIDEO_ID")
    run.add_argument("--config-json", default="{}", help='run config, e.g. {"ops": {"asset": {"config": {...}}}}')
    run.add_argument(
        "--asset",
        action="append",
        dest="assets",
        metavar="NAME",
        help="only this asset (repeatable; upstream must exist)",
    )
    args = parser.parse_args(argv)
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        results = backfill(
            args.partitions, instance=instance, run_config=json.loads(args.config_json), assets=args.assets
        )
    return 0 if all(ok for _, _, ok in results) else 1


defs = scale_out_definitions()

if __name__ == "__main__":
    sys.exit(main())
