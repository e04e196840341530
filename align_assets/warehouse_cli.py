"""``align-warehouse``: check the warehouse file, or rebuild it from the files it is made of.

The warehouse holds nothing that is not also in a file: collected tables come from per-video
Parquet artifacts, ``csv_problems`` from ``raw/*.csv``, ``ab_results`` from the A/B exports
archived in ``inbox/ab_results/**/done/`` and ``inbox/ab_results/imported/``, the experiment registry from
``experiments/*.experiment.json``, the ``analysis_*`` tables from the report. So:

- ``align-warehouse check --data-dir DIR`` reads every block of every table (DuckDB verifies each
  block's checksum as it reads) and prints rows and a checksum per table; a damaged file is moved
  aside to ``warehouse.corrupt-<time>.duckdb`` (exit 1).
- ``align-warehouse rebuild --data-dir DIR`` builds a new file beside the old one from those
  files, through the same code paths as the assets and the validated ingest, and swaps it in.
  A readable old warehouse is kept as ``warehouse.replaced-<time>.duckdb`` after its registry
  rows are saved to ``experiments/`` (so a registry older than those files is not lost).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from align_core.experiments.ab_archive import archived_exports
from align_core.experiments.ab_results import IngestReport, ensure_tables, ingest_export
from align_core.experiments.registry_files import restore_registry, save_all_experiment_files
from align_core.io.layout import DataLayout
from align_core.io.warehouse import (
    WarehouseBusyError,
    WarehouseCorruptError,
    read_connection,
    transaction,
    warehouse_lock,
    write_connection,
)
from align_core.io.warehouse_guard import rebuild_marker, table_checksums
from align_core.settings import add_data_dir_argument

__all__ = [
    "RebuildSummary",
    "main",
    "rebuild_warehouse",
]


@dataclass
class RebuildSummary:
    """What a rebuild restored, per table, and what it could not."""

    database: Path
    tables: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    previous: Path | None = None
    previous_state: str = "absent"


def _save_old_registry(database: Path) -> str:
    """Save the registry rows of a readable old warehouse to files; how the old file stands."""
    if not database.exists():
        return "absent"
    try:
        with read_connection(database) as con:
            saved = save_all_experiment_files(con)
        return f"readable ({len(saved)} experiment(s) saved to experiments/)"
    except WarehouseCorruptError as exc:
        return f"damaged: {exc}"


def _reingest(layout: DataLayout, database: Path, summary: RebuildSummary) -> None:
    """Every archived export through the validated ingest, in arrival order (later ones restate earlier days)."""
    for item in archived_exports(layout.ab_inbox_dir):
        report: IngestReport = ingest_export(
            item.path,
            database,
            mapping=item.mapping,
            check_catalog=item.check_catalog,
            move=False,
            source_name=item.source_name,
        )
        if not report.ok:
            first = report.errors[0] if report.errors else "rejected"
            summary.problems.append(f"{item.path}: not restored ({len(report.errors)} problem(s), first: {first})")


def _build(layout: DataLayout, building: Path, summary: RebuildSummary) -> None:
    """Every table into ``building``: collected, csv_problems, registry, then A/B results."""
    import align_assets.production  # noqa: F401  (defines every collected table's asset)
    from align_assets.warehouse_tables import COLLECTED_TABLES
    from align_core.stages.catalog import write_csv_problems

    for name, spec in sorted(COLLECTED_TABLES.items()):
        summary.tables[name] = spec.collect(layout, building)[0]
    summary.tables["csv_problems"] = len(write_csv_problems(layout, building))
    with write_connection(building) as con, transaction(con):
        restored = restore_registry(con, layout.root / "experiments")
        if restored:  # registering an experiment creates the results tables, as it did originally
            ensure_tables(con)
        summary.tables.update(restored)
    _reingest(layout, building, summary)


def rebuild_warehouse(data_dir: str | os.PathLike[str], report: bool = True) -> RebuildSummary:
    """Rebuild ``<data_dir>/warehouse.duckdb`` from files and swap it in (see the module docstring).

    Holds the writer lock from start to swap, so no platform write lands in the old file meanwhile.
    """
    layout = DataLayout(Path(data_dir))
    database = layout.warehouse_path
    summary = RebuildSummary(database)
    summary.previous_state = _save_old_registry(database)
    building = database.with_name(f".{database.stem}.rebuild-{os.getpid()}{database.suffix}")
    with warehouse_lock(database):
        for leftover in (building, building.with_name(building.name + ".wal")):
            leftover.unlink(missing_ok=True)
        try:
            _build(layout, building, summary)
        except BaseException:
            building.unlink(missing_ok=True)
            raise
        if database.exists():
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            summary.previous = database.with_name(f"{database.stem}.replaced-{stamp}{database.suffix}")
            os.replace(database, summary.previous)
        database.with_name(database.name + ".wal").unlink(missing_ok=True)
        os.replace(building, database)
        rebuild_marker(database).unlink(missing_ok=True)
        building.with_name(building.name + ".lock").unlink(missing_ok=True)
    if report:
        _refresh_report(layout, summary)
    return summary


def _refresh_report(layout: DataLayout, summary: RebuildSummary) -> None:
    from analysis.report import build_report

    try:
        build_report(layout.warehouse_path, layout.reports_dir)
    except Exception as exc:  # the tables are back; a report that cannot be built is said, not fatal
        summary.problems.append(f"analysis_* tables not recomputed ({type(exc).__name__}: {exc}); run align-report")


def _check(data_dir: Path) -> int:
    database = DataLayout(data_dir).warehouse_path
    try:
        with read_connection(database) as con:
            sums = table_checksums(con)
    except (WarehouseCorruptError, WarehouseBusyError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # a damaged block found while reading every row
        print(f"warehouse {database}: {exc}", file=sys.stderr)
        return 1
    for table, (rows, checksum) in sums.items():
        print(f"{table:32s} {rows:>10d} rows  checksum {checksum}")
    print(f"warehouse {database}: every block of {len(sums)} tables read back")
    return 0


def _rebuild(data_dir: Path, report: bool) -> int:
    summary = rebuild_warehouse(data_dir, report=report)
    print(f"old warehouse: {summary.previous_state}")
    for table, rows in sorted(summary.tables.items()):
        print(f"  {table:30s} {rows:>10d} rows restored")
    from align_core.experiments.ab_results import stored_ab_totals

    print(f"  {'ab_results':30s} {stored_ab_totals(summary.database)[0]:>10d} rows (re-ingested from the archive)")
    if summary.previous:
        print(f"previous file kept as {summary.previous}")
    for problem in summary.problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"rebuilt {summary.database}" + (" with the problems above" if summary.problems else ""))
    return 1 if summary.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="align-warehouse", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="read every table back; move a damaged file aside")
    add_data_dir_argument(check)
    rebuild = sub.add_parser("rebuild", help="rebuild the warehouse from artifacts, the A/B archive and experiments/")
    add_data_dir_argument(rebuild)
    rebuild.add_argument("--no-report", action="store_true", help="do not recompute the analysis_* tables")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(Path(args.data_dir))
        return _rebuild(Path(args.data_dir), report=not args.no_report)
    except (WarehouseBusyError, TimeoutError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
