"""Where every input and output lives under the data directory.

::

    data/
      raw/videos/<video_id>.<ext>     input videos (the file stem is the partition key)
      raw/masks/<video_id>.npz        provided per-frame product masks (optional)
      raw/alignment_score.csv         scene metadata (real schema)
      raw/keywords.csv                product keyword per video (real schema)
      raw/protect.csv                 user protect boxes (optional; align_core.perception.protect)
      raw/protect/<video_id>/*.png    user protect masks (optional)
      artifacts/<asset>/<video_id>/   per-video outputs of each asset
      artifacts/<asset>/_global/      outputs of unpartitioned assets
      models/                         local model directories (tiny backbone, LPIPS AlexNet, ...)
      inbox/ab_results/               A/B exports waiting for ingestion (done/, rejected/, imported/ inside it)
      experiments/                    plans, upload manifests, <id>.experiment.json (the registry)
      warehouse.duckdb                every table a researcher queries
      dagster_home/                   the Dagster instance the demo and the UI share

Every path built from a video id goes through :func:`validate_video_id`, so no id can point
outside the data directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from align_core.inputs.ids import validate_video_id
from align_core.io.video_io import VIDEO_SUFFIXES

__all__ = [
    "ARTIFACT_FILES",
    "AmbiguousVideoError",
    "DataLayout",
]

GLOBAL_KEY = "_global"

#: Every artifact file another stage, a table collector or the bench reads, by asset and role:
#: the one place these names are spelled. Files a stage writes and only it reads back (the
#: catalog's own ``catalog.json``, the renderer's ``<variant>.mp4`` / ``manifest.json``) keep
#: their names inside the module that writes and reads them.
ARTIFACT_FILES: dict[str, dict[str, str]] = {
    "video_catalog": {
        "catalog": "catalog.json",
        "scenes": "scenes.parquet",
        "thumbnail": "scene_strip.png",
        "video_row": "video.parquet",
    },
    "attention_maps": {"maps": "attention.npz"},
    "keyword_masks": {
        "masks": "masks.npz",
        "diagnostics": "annotated_diagnostics.parquet",
        "absent_strip": "absent_frames.png",
    },
    "control_tensors": {
        "control": "control.npz",
        "frames": "alignment_frames.parquet",
        "scenes": "alignment_scenes.parquet",
        "plot": "alignment.png",
        "overlays": "overlays.png",
    },
    "controlnet_checkpoint": {"current": "current.json", "loss_curve": "loss_curve.png", "runs": "runs"},
    "variant_plans": {
        "plans": "plans.json",
        "skipped": "skipped.json",
        "scenes": "plan_scenes.parquet",
        "targets": "targets.png",
    },
    "variant_videos": {"rows": "variants.parquet"},
    "variant_quality": {
        "quality": "quality.parquet",
        "manipulation": "manipulation.parquet",
        "plot": "target_vs_achieved.png",
        "eligibility": "eligibility.parquet",
        "stimulus": "stimulus.parquet",
        "stimulus_ocr": "stimulus_ocr.parquet",
        "stimulus_card": "stimulus_card.html",
        "scorers": "manipulation_scorers.parquet",
    },
    "demo_ab_export": {"truth": "planted_truth.json"},
    "human_attention": {"trials": "human_trials.parquet", "scorer_card": "scorer_card.parquet"},
}


class AmbiguousVideoError(ValueError):
    """Two input files share a stem (``dup.mp4`` and ``dup.mkv``): which one is the ad is not guessed."""


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # -- raw inputs ----------------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def videos_dir(self) -> Path:
        return self.raw_dir / "videos"

    @property
    def masks_dir(self) -> Path:
        return self.raw_dir / "masks"

    @property
    def alignment_csv(self) -> Path:
        return self.raw_dir / "alignment_score.csv"

    @property
    def keywords_csv(self) -> Path:
        return self.raw_dir / "keywords.csv"

    def video_files(self, video_id: str) -> list[Path]:
        """Every input file whose stem is ``video_id``, any supported suffix in any case (``.MOV``)."""
        video_id = validate_video_id(video_id)
        if not self.videos_dir.is_dir():
            return []
        return sorted(
            path
            for path in self.videos_dir.iterdir()
            if path.stem == video_id
            and path.suffix.lower() in VIDEO_SUFFIXES
            and not path.name.startswith(".")
            and path.is_file()
        )

    def video_path(self, video_id: str) -> Path:
        """The one input file for ``video_id``; two files with that stem are refused, naming both."""
        found = self.video_files(video_id)
        if len(found) > 1:
            raise AmbiguousVideoError(
                f"{' and '.join(p.name for p in found)} in {self.videos_dir} are both video id {video_id!r};"
                " remove or rename all but one"
            )
        if not found:
            raise FileNotFoundError(f"no video file for id {video_id!r} in {self.videos_dir}")
        return found[0]

    def provided_mask_path(self, video_id: str) -> Path:
        return self.masks_dir / f"{validate_video_id(video_id)}.npz"

    @property
    def protect_csv(self) -> Path:
        """User protect boxes (format in :mod:`align_core.perception.protect`)."""
        return self.raw_dir / "protect.csv"

    def protect_masks_dir(self, video_id: str) -> Path:
        """User protect mask PNGs for one video (format in :mod:`align_core.perception.protect`)."""
        return self.raw_dir / "protect" / validate_video_id(video_id)

    # -- outputs -------------------------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    def artifact_dir(self, asset: str, video_id: str = GLOBAL_KEY) -> Path:
        """``artifacts/<asset>/<video_id>/`` (created on demand by the writer, not here)."""
        if video_id != GLOBAL_KEY:
            video_id = validate_video_id(video_id)
        if not asset.isidentifier():
            raise ValueError(f"asset name {asset!r} is not an identifier")
        return self.artifacts_dir / asset / video_id

    def artifact(self, asset: str, role: str, video_id: str = GLOBAL_KEY) -> Path:
        """The file that plays ``role`` in ``asset``'s output for ``video_id`` (see :data:`ARTIFACT_FILES`)."""
        try:
            name = ARTIFACT_FILES[asset][role]
        except KeyError:
            raise KeyError(
                f"no artifact {role!r} for asset {asset!r}; known: {ARTIFACT_FILES.get(asset, {})}"
            ) from None
        return self.artifact_dir(asset, video_id) / name

    def artifact_files(self, asset: str, role: str) -> list[Path]:
        """Every video's ``role`` file of ``asset`` that exists now, sorted (what a table collector reads)."""
        name = ARTIFACT_FILES[asset][role]
        return sorted(p for p in (self.artifacts_dir / asset).glob(f"*/{name}") if p.parent.name != GLOBAL_KEY)

    def variant_video(self, video_id: str, variant: str) -> Path:
        """``artifacts/variant_videos/<video_id>/<variant>.mp4``, as the renderer names its outputs."""
        if not variant.isidentifier():
            raise ValueError(f"variant name {variant!r} is not an identifier")
        return self.artifact_dir("variant_videos", video_id) / f"{variant}.mp4"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def ab_inbox_dir(self) -> Path:
        return self.root / "inbox" / "ab_results"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def ensure(self) -> DataLayout:
        for directory in (self.videos_dir, self.masks_dir, self.artifacts_dir, self.models_dir, self.ab_inbox_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return self
