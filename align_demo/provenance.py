"""Which data directories the demo made: simulated data may appear only there.

The demo corpus generator records every input file it writes in ``raw/.align-demo-files.json``
(relative path -> sha256). A directory is the demo's when that record exists and still matches
the corpus record ``raw/demo_corpus.json`` it names; anything else is a user's directory, where
``align-demo`` refuses to write and the demo profile's definitions add no simulated A/B export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from align_core.io.atomic import atomic_write_text
from align_core.io.layout import DataLayout

__all__ = [
    "CORPUS_RECORD",
    "DEMO_FILES",
    "demo_made",
    "foreign_inputs",
    "record_demo_inputs",
]

#: What the demo wrote into ``raw/`` (relative path -> sha256): only these may be rewritten by it.
DEMO_FILES = ".align-demo-files.json"
#: The corpus description every demo directory has; the record must vouch for it.
CORPUS_RECORD = "demo_corpus.json"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _raw_files(layout: DataLayout) -> list[Path]:
    if not layout.raw_dir.is_dir():
        return []
    return sorted(
        path
        for path in layout.raw_dir.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(layout.raw_dir).parts)
    )


def _record(layout: DataLayout) -> dict[str, str] | None:
    """The demo's record of its inputs, or None when absent or unreadable."""
    try:
        recorded = json.loads((layout.raw_dir / DEMO_FILES).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def demo_made(layout: DataLayout) -> bool:
    """True when the demo made this directory: its record exists and vouches for the corpus record."""
    recorded = _record(layout)
    corpus = layout.raw_dir / CORPUS_RECORD
    if not recorded or not corpus.is_file():
        return False
    return recorded.get(CORPUS_RECORD) == _sha256(corpus)


def _outputs_present(layout: DataLayout) -> list[str]:
    """Outputs a user's runs leave (warehouse, inbox, experiments, artifacts, reports) that hold files."""
    found = [layout.warehouse_path] if layout.warehouse_path.exists() else []
    for folder in (layout.root / "inbox", layout.root / "experiments", layout.artifacts_dir, layout.reports_dir):
        if folder.is_dir() and any(path.is_file() for path in folder.rglob("*")):
            found.append(folder)
    return [str(path.relative_to(layout.root)) for path in found]


def foreign_inputs(layout: DataLayout) -> list[str]:
    """What in this directory the demo did not create, which it must not overwrite or add to.

    In the demo's own directory: the input files in ``raw/`` it did not write (or that changed
    since). Elsewhere: every input file and every output (warehouse, inbox, experiments,
    artifacts, reports) already there.
    """
    if not demo_made(layout):
        inputs = [str(path.relative_to(layout.root)) for path in _raw_files(layout)]
        return inputs + _outputs_present(layout)
    recorded = _record(layout) or {}
    return [
        str(path.relative_to(layout.root))
        for path in _raw_files(layout)
        if recorded.get(str(path.relative_to(layout.raw_dir))) != _sha256(path)
    ]


def record_demo_inputs(layout: DataLayout) -> None:
    """Record every input file in ``raw/`` as the demo's (called once the corpus is written)."""
    digests = {str(path.relative_to(layout.raw_dir)): _sha256(path) for path in _raw_files(layout)}
    atomic_write_text(layout.raw_dir / DEMO_FILES, json.dumps(digests, indent=1, sort_keys=True) + "\n")
