"""``python -m bench.run_all --quick`` runs the per-video stages and prints one row per stage and length."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# slow: runs the pipeline (renders, materializes or runs CLIs); `make test-fast` leaves it out
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STAGES = ("corpus", "catalog", "attention", "masks", "control")


def _number(cell: str) -> float:
    match = re.search(r"[-+]?\d[\d,]*(?:\.\d+)?", cell)
    assert match, f"no number in table cell {cell!r}"
    return float(match.group(0).replace(",", ""))


def test_quick_run_prints_a_row_per_stage_with_positive_numbers(tmp_path: Path) -> None:
    out_json = tmp_path / "run_all.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--stages", *STAGES, "--json", str(out_json)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    header = next(line for line in proc.stdout.splitlines() if line.startswith("| stage | video |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = [
        dict(zip(columns, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in proc.stdout.splitlines()
        if line.startswith("| ")
        and line.split("|")[1].strip().split(" ")[0] in STAGES
        and "/" not in line.split("|")[2]
    ]
    seen = {(row["stage"], row["video"]) for row in rows}
    for stage in STAGES:
        assert {(stage, "4 s"), (stage, "6 s")} <= seen, f"missing rows for {stage}: {sorted(seen)}"
    for row in rows:
        for column in ("frames", "time s", "rate", "peak MB", "import MB", "bytes on disk"):
            assert _number(row[column]) > 0, (row["stage"], column, row[column])
        assert _number(row["peak MB"]) >= _number(row["import MB"])

    # the growth table compares the two lengths for every per-video stage
    growth = [line for line in proc.stdout.splitlines() if re.match(r"\| \w+ \| 6s/4s \|", line)]
    assert {line.split("|")[1].strip() for line in growth} == set(STAGES)
    for line in growth:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert _number(cells[2]) == 1.5  # frames ratio 72/48
        assert _number(cells[3]) > 0 and _number(cells[4]) > 0

    payload = json.loads(out_json.read_text())
    assert [r["stage"] for r in payload["rows"]] == [s for s in STAGES for _ in (4, 6)]
    assert payload["import_baseline"]["import_mb"] > 0
    assert all(r["bytes"] > 0 and r["seconds"] > 0 and r["peak_mb"] > 0 for r in payload["rows"])
