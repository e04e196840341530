"""Partitioning for labs past 100,000 videos: arrival batches, not one partition per video.

Dagster documents at most 100,000 partitions per asset; the real keyword file alone has
107,205 videos. Registering them works (``register`` and ``definitions validate`` stay flat)
and the per-video automation is event-driven (:mod:`align_assets.automation`), but the UI's
partition views, backfill planning and status caches all grow with the partition count. Past
100,000 videos a lab should partition by **arrival batch** instead:

* a batch is up to :data:`DEFAULT_BATCH_SIZE` videos that arrived on one date, keyed
  ``<YYYY-MM-DD>-<NNNN>`` (``2026-11-25-0003``): 107,205 videos are 108 partitions, a
  million videos a thousand;
* the batch's videos are listed in ``artifacts/_batches/<batch>.json`` (written by
  :func:`register_batches`, never changed afterwards: a re-delivered video goes in a new batch);
* each per-video stage becomes a batch-partitioned asset that runs the same per-video stage
  function for every video of its batch (:func:`batched_asset`), writing exactly the per-video
  artifacts (``artifacts/<asset>/<video_id>/...``) the video-partitioned assets write, so the
  warehouse tables, the analysis and every ``align_core`` function are unchanged. A video that
  fails is reported in the batch's metadata with its error; the others still materialize, and
  re-running the batch redoes only what is missing unless ``redo`` is set.

This module's :data:`defs` is a separate code location (``-m align_assets.large_corpus``) with
the batch partitions and the stages whose per-video function is factored out
(``attention_maps``: :func:`~align_assets.assets.attention.attention_for_video`,
``variant_plans``: :func:`~align_assets.assets.variants.plans_for_video`); every other stage
joins by wrapping its per-video function the same way.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Definitions,
    DynamicPartitionsDefinition,
    Field,
    MaterializeResult,
    MetadataValue,
    asset,
)

from align_assets.resources import PlatformResource, default_resources
from align_core.inputs.ids import validate_video_id
from align_core.io.atomic import atomic_write_text
from align_core.io.layout import DataLayout

__all__ = [
    "VIDEO_BATCHES_NAME",
    "batch_keys",
    "batched_asset",
    "defs",
    "read_batch",
    "register_batches",
]

VIDEO_BATCHES_NAME = "video_batches"
video_batch_partitions = DynamicPartitionsDefinition(name=VIDEO_BATCHES_NAME)
DEFAULT_BATCH_SIZE = 1_000
BATCHES_DIR = "_batches"


def batch_keys(
    video_ids: Sequence[str], arrival: date, batch_size: int = DEFAULT_BATCH_SIZE, first_index: int = 0
) -> dict[str, list[str]]:
    """Split the videos that arrived on ``arrival`` into batches of at most ``batch_size``, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = [validate_video_id(v, where=f"batch of {arrival.isoformat()}") for v in video_ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"batch of {arrival.isoformat()}: a video id appears twice")
    return {
        f"{arrival.isoformat()}-{first_index + n:04d}": ids[start : start + batch_size]
        for n, start in enumerate(range(0, len(ids), batch_size))
    }


def batch_manifest_path(layout: DataLayout, batch: str) -> Path:
    return layout.artifacts_dir / BATCHES_DIR / f"{batch}.json"


def register_batches(layout: DataLayout, batches: Mapping[str, Sequence[str]], instance=None) -> list[str]:
    """Write each batch's manifest (a batch never changes once written) and register the partitions."""
    for batch, ids in batches.items():
        path = batch_manifest_path(layout, batch)
        payload = json.dumps({"batch": batch, "video_ids": list(ids)}, indent=1)
        if path.exists():
            if json.loads(path.read_text())["video_ids"] != list(ids):
                raise ValueError(f"batch {batch} already exists at {path} with other videos: use a new batch key")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, payload)
    if instance is not None:
        instance.add_dynamic_partitions(VIDEO_BATCHES_NAME, list(batches))
    return list(batches)


def read_batch(layout: DataLayout, batch: str) -> list[str]:
    path = batch_manifest_path(layout, batch)
    if not path.exists():
        raise FileNotFoundError(f"batch {batch}: no manifest at {path} (register_batches writes it)")
    return [validate_video_id(v, where=str(path)) for v in json.loads(path.read_text())["video_ids"]]


def batched_asset(
    name: str,
    deps: Sequence[str],
    run_video: Callable[[PlatformResource, str], Mapping[str, Any]],
    *,
    done_file: str,
    group_name: str = "batched",
) -> AssetsDefinition:
    """A batch-partitioned asset that runs ``run_video(platform, video_id)`` for each video of its batch.

    ``done_file`` is the per-video artifact that shows a video is done (re-running a batch
    skips those videos unless run config sets ``redo``).
    """

    @asset(
        name=name,
        partitions_def=video_batch_partitions,
        deps=list(deps),
        group_name=group_name,
        kinds={"python"},
        config_schema={"redo": Field(bool, default_value=False, is_required=False)},
        description=f"{name} for every video of an arrival batch (large corpora).",
    )
    def _batched(context: AssetExecutionContext, platform: PlatformResource) -> MaterializeResult:
        redo = bool((context.op_execution_context.op_config or {}).get("redo", False))
        ids = read_batch(platform.layout, context.partition_key)
        done, skipped, failed = 0, 0, {}
        for video_id in ids:
            if not redo and (platform.layout.artifact_dir(name, video_id) / done_file).exists():
                skipped += 1
                continue
            try:
                run_video(platform, video_id)
                done += 1
            except Exception as exc:  # one bad video never fails its batch's other videos
                failed[video_id] = f"{type(exc).__name__}: {exc}"
                context.log.error(f"{name} {video_id}: {exc}")
        if failed and not done and not skipped:
            raise RuntimeError(
                f"{name} batch {context.partition_key}: every video failed, first: {next(iter(failed.items()))}"
            )
        return MaterializeResult(
            metadata={
                "videos": len(ids),
                "materialized": done,
                "already_done": skipped,
                "failed": len(failed),
                "failures": MetadataValue.json(failed),
            }
        )

    return _batched


def _attention_video(platform: PlatformResource, video_id: str) -> Mapping[str, Any]:
    from align_assets.resources import ScorerResource
    from align_core.stages.attention import AttentionSettings, run_attention

    result = run_attention(platform.layout, video_id, ScorerResource().measure(platform), AttentionSettings())
    return {"path": str(result.path), "seconds": round(result.seconds, 2)}


def _plans_video(platform: PlatformResource, video_id: str) -> Mapping[str, Any]:
    from align_core.stages.variants import VariantPlanSettings, run_plans

    result = run_plans(platform.layout, video_id, VariantPlanSettings())
    return {"skipped": result.skipped_reason or False}


batched_attention_maps = batched_asset("attention_maps", ["video_catalog"], _attention_video, done_file="attention.npz")
batched_variant_plans = batched_asset("variant_plans", ["control_tensors"], _plans_video, done_file="plans.json")

defs = Definitions(assets=[batched_attention_maps, batched_variant_plans], resources=default_resources())
