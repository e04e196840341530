"""The upload manifest: which variant file goes to the ad platform under which ad name.

One row per eligible variant file of one experiment: the ad name that encodes experiment,
video and variant (``<experiment_id>.<video_id>.<variant>``, decoded back by the export
mappings), the file's sha256 (re-hashed and compared with the one recorded when the variant
was rendered, so a file changed since is caught before it is uploaded), duration and
resolution. Written as ``<experiment_id>.upload_manifest.csv`` and as the rows of that
experiment in the warehouse table ``upload_manifest``.

Eligibility: the warehouse ``variants`` table's ``eligible`` column (True: may be tested) and
``exclusion_reason`` decide. Without that column every rendered variant is treated as eligible
and the result says so. A video whose control arm is not eligible is left out whole (its
treatments would have nothing to be compared with). ``include_ineligible=True`` is the explicit
override and is recorded in the result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from align_core.experiments.ab_mapping import encode_ad_name
from align_core.experiments.config import registered_variants
from align_core.experiments.experiments_table import save_experiment_file
from align_core.io.atomic import atomic_path
from align_core.io.hashing import file_sha256
from align_core.io.video_io import probe_video
from align_core.io.warehouse import read_connection, replace_rows, table_exists, write_connection
from align_core.stimuli.plans import DEFAULT_VARIANTS, VariantSpec, control_name

__all__ = [
    "build_upload_manifest",
    "prepare_upload_manifest",
    "write_upload_manifest",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "experiment_id",
    "ad_name",
    "video_id",
    "variant",
    "role",
    "file",
    "sha256",
    "bytes",
    "duration_s",
    "width",
    "height",
    "fps",
    "video_codec",
)


@dataclass(frozen=True)
class UploadManifest:
    experiment_id: str
    path: Path | None  # None until written (prepare_upload_manifest)
    rows: pd.DataFrame
    excluded: pd.DataFrame  # video_id, variant, reason
    eligibility_column: bool
    notes: list[str] = field(default_factory=list)


def build_upload_manifest(
    database: str | os.PathLike[str],
    experiment_id: str,
    out_dir: str | os.PathLike[str],
    variants: Sequence[VariantSpec] | None = None,
    include_ineligible: bool = False,
    data_root: str | os.PathLike[str] | None = None,
) -> UploadManifest:
    """Write the experiment's upload manifest (CSV + ``upload_manifest`` rows) and return it.

    ``variants``: the experiment's registry (default: its registered arms, else the defaults).
    ``data_root``: what relative ``variants.path`` values are relative to (default: the
    warehouse's folder, the data directory); ``file`` keeps the path as the table records it.
    """
    manifest = prepare_upload_manifest(database, experiment_id, variants, include_ineligible, data_root)
    return write_upload_manifest(manifest, database, out_dir)


def prepare_upload_manifest(
    database: str | os.PathLike[str],
    experiment_id: str,
    variants: Sequence[VariantSpec] | None = None,
    include_ineligible: bool = False,
    data_root: str | os.PathLike[str] | None = None,
) -> UploadManifest:
    """The manifest with every file re-hashed and probed, nothing written (``path`` is None).

    Raises ``ValueError`` / ``FileNotFoundError`` naming the file when a variant is missing or
    changed since it was rendered, so a caller can check before it registers anything.
    """
    root = Path(data_root) if data_root is not None else Path(database).resolve().parent
    rendered, registry, has_eligible = _rendered_variants(database, experiment_id, variants)
    notes: list[str] = []
    if not has_eligible:
        notes.append("the variants table has no 'eligible' column: every rendered variant was treated as eligible")
    if include_ineligible:
        notes.append("include_ineligible=True: variants that failed their checks are included (explicit override)")
    kept, excluded = _uploadable(rendered, registry, include_ineligible)
    roles = {s.name: s.role for s in registry}
    missing_arms = [
        f"{v}: no {a}" for v, part in kept.groupby("video_id") for a in roles if a not in set(part["variant"])
    ]
    if missing_arms:
        notes.append("arms missing for some videos (not rendered or not eligible): " + "; ".join(missing_arms[:20]))

    order = {s.name: i for i, s in enumerate(registry)}
    ordered = kept.sort_values(["video_id", "variant"], key=lambda c: c.map(order) if c.name == "variant" else c)
    rows = [_manifest_row(r, root, experiment_id, roles[r.variant]) for r in ordered.itertuples()]
    table = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    table["video_id"] = table["video_id"].astype("string")
    return UploadManifest(experiment_id, None, table, excluded.reset_index(drop=True), has_eligible, notes)


def write_upload_manifest(
    manifest: UploadManifest, database: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> UploadManifest:
    """Write a prepared manifest: ``<out_dir>/<experiment>.upload_manifest.csv`` and its warehouse rows."""
    path = Path(out_dir) / f"{manifest.experiment_id}.upload_manifest.csv"
    with atomic_path(path) as tmp:
        manifest.rows.to_csv(tmp, index=False)
    with write_connection(database) as con:
        replace_rows(con, "upload_manifest", manifest.rows, {"experiment_id": manifest.experiment_id})
        save_experiment_file(con, manifest.experiment_id)
    return dataclasses.replace(manifest, path=path)


def _rendered_variants(
    database: str | os.PathLike[str], experiment_id: str, variants: Sequence[VariantSpec] | None
) -> tuple[pd.DataFrame, tuple[VariantSpec, ...], bool]:
    """The rendered variant files with their verdicts, the experiment's registry, and whether the
    ``variants`` table has an ``eligible`` column at all."""
    with read_connection(database) as con:
        if not table_exists(con, "variants"):
            raise ValueError(
                f"{database}: no variants table; render variant_videos and collect the variants table first"
            )
        registry = (
            tuple(variants) if variants is not None else registered_variants(con).get(experiment_id, DEFAULT_VARIANTS)
        )
        columns = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'variants'"
            ).fetchall()
        }
        has_eligible = "eligible" in columns
        extra = (
            ", eligible, " + ("exclusion_reason" if "exclusion_reason" in columns else "NULL AS exclusion_reason")
            if has_eligible
            else ", TRUE AS eligible, NULL AS exclusion_reason"
        )
        rendered = con.execute(
            f"SELECT CAST(video_id AS VARCHAR) AS video_id, variant, path, sha256{extra} FROM variants ORDER BY video_id"
        ).df()
    return rendered, registry, has_eligible


def _uploadable(
    rendered: pd.DataFrame, registry: Sequence[VariantSpec], include_ineligible: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, excluded): the registry's eligible variants of videos whose control arm is kept, and
    the others with the reason."""
    control = control_name(registry)
    rendered = rendered[rendered["variant"].isin([s.name for s in registry])].copy()
    rendered["eligible"] = rendered["eligible"].fillna(False).astype(bool) | include_ineligible
    excluded = rendered.loc[~rendered["eligible"], ["video_id", "variant"]].assign(
        reason=rendered.loc[~rendered["eligible"], "exclusion_reason"].fillna("not eligible (no reason recorded)")
    )
    kept = rendered[rendered["eligible"]]
    with_control = set(kept.loc[kept["variant"] == control, "video_id"])
    orphaned = kept[~kept["video_id"].isin(with_control)]
    if len(orphaned):
        excluded = pd.concat(
            [
                excluded,
                orphaned[["video_id", "variant"]].assign(
                    reason=f"the video's control arm ({control}) is not eligible or not rendered"
                ),
            ],
            ignore_index=True,
        )
    return kept[kept["video_id"].isin(with_control)], excluded


def _manifest_row(r: Any, root: Path, experiment_id: str, role: str) -> dict[str, Any]:
    """One manifest row; the file is re-hashed and must match the hash recorded when it was rendered."""
    path = Path(r.path) if Path(r.path).is_absolute() else root / r.path
    if not path.is_file():
        raise FileNotFoundError(f"video {r.video_id} variant {r.variant}: file {path} is missing")
    digest = file_sha256(path)
    if r.sha256 and digest != r.sha256:
        raise ValueError(
            f"video {r.video_id} variant {r.variant}: {path} hashes to {digest[:12]}..., "
            f"the variants table recorded {str(r.sha256)[:12]}...: the file changed since it was rendered"
        )
    probe = probe_video(path)
    return {
        "experiment_id": experiment_id,
        "ad_name": encode_ad_name(experiment_id, r.video_id, r.variant),
        "video_id": r.video_id,
        "variant": r.variant,
        "role": role,
        "file": str(r.path),
        "sha256": digest,
        "bytes": probe.size_bytes,
        "duration_s": round(probe.duration_s, 3),
        "width": probe.width,
        "height": probe.height,
        "fps": round(probe.fps, 3),
        "video_codec": probe.video_codec,
    }
