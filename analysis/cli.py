"""``align-report``: render the analysis report from a DuckDB file, without Dagster."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from analysis.report import build_report

__all__ = [
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the report, print the headline; exit 0 on success, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="align-report", description=__doc__)
    parser.add_argument("--database", default="data/warehouse.duckdb", help="DuckDB warehouse file")
    parser.add_argument("--out", default="data/reports", help="directory for report.html and headline.md")
    parser.add_argument("--experiment", default=None, help="only this experiment_id")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of intervals")
    parser.add_argument(
        "--design",
        choices=("paired", "unpaired"),
        default="paired",
        help="paired: every video in every arm (the platform's own); unpaired: each video in one arm",
    )
    parser.add_argument(
        "--include-ineligible",
        action="store_true",
        help="explicit override: also analyse variants that did not pass their checks",
    )
    parser.add_argument("--no-write", action="store_true", help="do not replace the analysis_* tables")
    args = parser.parse_args(argv)
    try:
        report = build_report(
            args.database,
            args.out,
            alpha=args.alpha,
            experiment_id=args.experiment,
            write_to_warehouse=not args.no_write,
            design=args.design,
            include_ineligible=args.include_ineligible,
        )
    except (FileNotFoundError, ValueError) as exc:  # a missing file, or data that do not fit the design
        print(f"align-report: {exc}", file=sys.stderr)
        return 2
    print(report.headline_markdown)
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {report.html_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
