"""mypy against a per-file baseline that may only shrink.

The codebase predates type checking in CI; its known errors are counted per file in
``.ci/mypy-baseline.json``. The gate fails when a file has more errors than its baseline (a new
file's baseline is 0) and says which files could lower theirs. ``--update`` writes the current
counts, and refuses to raise any.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

BASELINE = Path(__file__).with_name("mypy-baseline.json")
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+: error:")


def error_counts() -> tuple[Counter[str], str]:
    """Errors per file from one mypy run over the configured packages (pyproject's [tool.mypy])."""
    run = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, check=False)
    if run.returncode not in (0, 1):
        raise SystemExit(f"mypy failed to run (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    counts = Counter(m["path"] for line in run.stdout.splitlines() if (m := ERROR.match(line)))
    return counts, run.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the current counts (never raising one)")
    args = parser.parse_args()
    baseline: dict[str, int] = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    counts, output = error_counts()
    grown = {path: (n, baseline.get(path, 0)) for path, n in counts.items() if n > baseline.get(path, 0)}
    shrunk = {path: (counts.get(path, 0), n) for path, n in baseline.items() if counts.get(path, 0) < n}
    if args.update:
        if grown and baseline:
            print("not updating: these files have more errors than their baseline:", grown)
            return 1
        BASELINE.write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
        print(f"mypy baseline: {sum(counts.values())} errors in {len(counts)} files written to {BASELINE}")
        return 0
    for path, (now, was) in sorted(shrunk.items()):
        print(f"mypy: {path} has {now} errors, baseline {was}: lower it with `python .ci/mypy_gate.py --update`")
    if grown:
        print("".join(line + "\n" for line in output.splitlines() if ERROR.match(line) and line.split(":")[0] in grown))
        for path, (now, was) in sorted(grown.items()):
            print(f"mypy: {path} has {now} errors, more than its baseline of {was}")
        return 1
    print(f"mypy: {sum(counts.values())} errors, none above the per-file baseline ({sum(baseline.values())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
