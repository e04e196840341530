"""``align-import-ab EXPORT --mapping NAME``: validate a platform's A/B export and land it.

The export is read through a declarative column map (:mod:`align_core.experiments.ab_mapping`), every row
is checked (ids, the ad name's experiment/video/variant against the catalog and the
experiment's registered arms, counts, dates), and a clean file is upserted into the
warehouse's ``ab_results`` in one transaction. On any problem nothing is written and the
problems are printed grouped by row, so a researcher can fix the sheet and run it again.
The file itself is left where it is; a copy is archived in ``inbox/ab_results/imported/`` with
its mapping, so ``align-warehouse rebuild`` can re-ingest it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from align_core.experiments.ab_archive import archive_import
from align_core.experiments.ab_mapping import AD_NAME_FORMAT, load_mapping, shipped_mappings
from align_core.experiments.ab_results import IngestReport, ingest_export, known_videos_from_warehouse
from align_core.settings import add_data_dir_argument

__all__ = [
    "main",
]

_ROW = re.compile(r"^(?P<file>[^:]+): row (?P<row>\d+) \(line (?P<line>\d+)\): (?P<what>.*)$")


def problem_list(report: IngestReport, limit: int = 200) -> str:
    """The errors of a rejected export as a readable list: file-level first, then per row."""
    general: list[str] = []
    by_row: dict[int, tuple[int, list[str]]] = defaultdict(lambda: (0, []))
    for error in report.errors:
        match = _ROW.match(error)
        if match:
            row = int(match["row"])
            line, items = by_row[row]
            by_row[row] = (int(match["line"]), items + [match["what"]])
        else:
            general.append(error)
    lines = [
        f"{report.source.name}: NOT imported, {len(report.errors)} problem(s) "
        f"in {len(by_row)} row(s); nothing was written to the warehouse"
    ]
    lines += [f"  {g}" for g in general]
    for shown, row in enumerate(sorted(by_row)):
        if shown == limit:
            lines.append(f"  ... and {len(by_row) - limit} more row(s)")
            break
        line, items = by_row[row]
        lines.append(f"  row {row} (line {line}):")
        lines += [f"    - {item}" for item in items]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = ", ".join(sorted(shipped_mappings()))
    parser = argparse.ArgumentParser(
        prog="align-import-ab",
        description=__doc__.split("\n\n")[0],
        epilog=f"Shipped mappings: {names}. Ad names must read {AD_NAME_FORMAT} (the upload manifest writes them).",
    )
    parser.add_argument("export", type=Path, help="the platform's export (CSV)")
    parser.add_argument("--mapping", required=True, help=f"a shipped mapping ({names}) or a mapping YAML file")
    add_data_dir_argument(parser)
    parser.add_argument("--database", default=None, help="a warehouse file (default: <data-dir>/warehouse.duckdb)")
    parser.add_argument(
        "--no-catalog-check", action="store_true", help="accept video ids missing from the warehouse's videos table"
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="record experiment ids not yet registered as new experiments (default: refuse them, so a typo "
        "in an id cannot start a new experiment; register with align-ab-plan first)",
    )
    args = parser.parse_args(argv)

    database = Path(args.database) if args.database else Path(args.data_dir) / "warehouse.duckdb"
    if not args.export.is_file():
        print(f"{args.export}: no such file", file=sys.stderr)
        return 2
    try:
        mapping = load_mapping(args.mapping)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if not args.no_catalog_check and known_videos_from_warehouse(database) is None:
        print(
            f"note: {database} has no videos table: video ids are not checked against the catalog, and "
            "industries cannot be joined until it exists",
            file=sys.stderr,
        )
    report = ingest_export(
        args.export,
        database,
        mapping=mapping,
        check_catalog=not args.no_catalog_check,
        move=False,
        register=args.register,
    )
    if not report.ok:
        print(problem_list(report), file=sys.stderr)
        return 1
    archived = archive_import(
        args.export,
        database.parent / "inbox" / "ab_results",
        args.mapping if args.mapping in shipped_mappings() else None,
        None if args.mapping in shipped_mappings() else Path(args.mapping),
        check_catalog=not args.no_catalog_check,
    )
    print(
        f"{args.export.name}: imported with the {mapping.name} mapping into {database}: {report.rows} rows "
        f"({report.rows_replaced} replaced), {report.impressions} impressions, "
        f"experiment(s) {', '.join(report.experiments)}; sha256 {report.sha256}; archived as {archived} "
        "(align-warehouse rebuild re-ingests it)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
