"""The archive of every A/B export the warehouse holds, so ``ab_results`` can be rebuilt.

Exports ingested from the inbox are moved to ``inbox/ab_results/done/`` (or
``inbox/ab_results/<mapping>/done/``) after their commit. Exports imported with
``align-import-ab`` from anywhere are copied to ``inbox/ab_results/imported/`` with a sidecar
``<name>.import.json`` naming the mapping (a custom mapping YAML is copied beside it) and whether
video ids were checked. :func:`archived_exports` lists them all in arrival order, for a rebuild
that re-ingests each through :func:`~align_core.experiments.ab_results.ingest_export`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from align_core.io.atomic import atomic_path, atomic_write_text
from align_core.io.video_io import file_sha256

__all__ = [
    "ArchivedExport",
    "IMPORTED_DIR",
    "archive_import",
    "archived_exports",
]

IMPORTED_DIR = "imported"
_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class ArchivedExport:
    path: Path
    mapping: str | None  # a shipped mapping's name or a mapping YAML path; None: the results schema
    check_catalog: bool = True
    source_name: str | None = None  # the name it arrived under (None: the file's own)


def archive_import(
    export: Path, inbox: Path, mapping: str | None, mapping_file: Path | None, check_catalog: bool
) -> Path:
    """Copy an imported export (and a custom mapping YAML) into ``<inbox>/imported/``; the copy's path."""
    folder = Path(inbox) / IMPORTED_DIR
    sha = file_sha256(export)
    target = folder / export.name
    if target.exists() and file_sha256(target) != sha:
        target = folder / f"{export.stem}.{sha[:12]}{export.suffix}"
    with atomic_path(target) as tmp:
        shutil.copyfile(export, tmp)
    if mapping_file is not None:
        copied = target.with_name(target.name + ".mapping.yaml")
        with atomic_path(copied) as tmp:
            shutil.copyfile(mapping_file, tmp)
        mapping = copied.name
    sidecar = {"mapping": mapping, "check_catalog": check_catalog, "source_name": export.name}
    atomic_write_text(target.with_name(target.name + ".import.json"), json.dumps(sidecar, sort_keys=True) + "\n")
    return target


def _exports_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _SUFFIXES]


def _imported(folder: Path) -> list[ArchivedExport]:
    found = []
    for path in _exports_in(folder):
        sidecar = path.with_name(path.name + ".import.json")
        if not sidecar.exists():
            continue
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        mapping = meta.get("mapping")
        if mapping and mapping.endswith(".mapping.yaml"):
            mapping = str(folder / mapping)
        found.append(ArchivedExport(path, mapping, bool(meta.get("check_catalog", True)), meta.get("source_name")))
    return found


def _arrival_name(path: Path) -> str | None:
    """``done/`` renames a second file of one name to ``<stem>.<sha12><suffix>``: the name it arrived under."""
    stem, dot, sha = path.stem.rpartition(".")
    if dot and len(sha) == 12 and all(c in "0123456789abcdef" for c in sha):
        if (path.parent / f"{stem}{path.suffix}").exists():
            return f"{stem}{path.suffix}"
    return None


def archived_exports(inbox: str | os.PathLike[str]) -> list[ArchivedExport]:
    """Every archived export (``done/`` of the inbox and of each mapping folder, ``imported/``), in
    the order they arrived (modification time, which the move into ``done/`` and the copy keep)."""
    from align_core.experiments.ab_mapping import shipped_mappings

    inbox = Path(inbox)
    found = [ArchivedExport(p, None, True, _arrival_name(p)) for p in _exports_in(inbox / "done")]
    for name in sorted(shipped_mappings()):
        found += [ArchivedExport(p, name, True, _arrival_name(p)) for p in _exports_in(inbox / name / "done")]
    found += _imported(inbox / IMPORTED_DIR)
    return sorted(found, key=lambda item: (item.path.stat().st_mtime_ns, item.path.name))
