"""The unpartitioned ``controlnet_checkpoint``: one ControlNet trained on many videos' control tensors."""

from dagster import AssetExecutionContext, Config, DataVersion, MaterializeResult, MetadataValue, asset

from align_assets.metadata import png_markdown
from align_assets.partitions import video_partitions
from align_assets.resources import PlatformResource
from align_core.stages.checkpoint import CheckpointSettings, run_checkpoint

__all__ = [
    "GPU_OP_TAGS",
]

GPU_OP_TAGS = {"dagster-celery/queue": "gpu"}  # Kubernetes GPU pods come from deploy/executors.yaml


class CheckpointConfig(Config, CheckpointSettings):
    """Training knobs (see ``align_core.stages.checkpoint.CheckpointSettings``)."""


@asset(
    deps=["control_tensors", "video_catalog"],
    group_name="model",
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    kinds={"pytorch", "safetensors"},
)
def controlnet_checkpoint(
    context: AssetExecutionContext, platform: PlatformResource, config: CheckpointConfig
) -> MaterializeResult:
    """Train the ControlNet (frozen SD backbone) on [M_t, S_t] from the training videos' control tensors.

    Training resumes from the latest checkpoint of an interrupted run with the same config and
    data; a different config or data set starts a fresh run. The current checkpoint is recorded
    in ``current.json`` (with its sha256) for the editors.
    """
    videos = sorted(video_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    result = run_checkpoint(platform.layout, videos, config, device=platform.defaults.device, log=context.log.info)
    training, current = result.training, result.current
    last = training.loss_history[-1] if training.loss_history else {}
    validation = training.validation[-1] if training.validation else {}
    # The weights' hash is the data version: variant videos made with other weights show as stale.
    return MaterializeResult(
        data_version=DataVersion(training.weights_sha256),
        metadata={
            "steps": training.steps,
            "final_loss": float(last.get("loss", float("nan"))),
            "final_losses": MetadataValue.json({k: v for k, v in last.items() if isinstance(v, float)}),
            "validation_loss": MetadataValue.json(validation),
            "loss_curve": png_markdown(result.paths["loss_curve"], alt="training loss"),
            "checkpoint_path": MetadataValue.path(str(training.checkpoint_dir)),
            "checkpoint_sha256": training.weights_sha256,
            "backbone_id": current["backbone_id"],
            "lpips_backbone_state": current["lpips_backbone"],
            "lambda_lpips": result.lambda_lpips,
            "train_frames": result.train_frames,
            "train_videos": MetadataValue.json(current["train_videos"]),
            "val_videos": MetadataValue.json(current["val_videos"]),
            "weights_used": MetadataValue.md(
                "\n".join(f"- {w}" for w in current["warnings"]) or "pretrained backbone and LPIPS"
            ),
        },
    )
