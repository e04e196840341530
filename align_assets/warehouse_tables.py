"""Warehouse tables collected from per-video Parquet artifacts.

Per-video assets never write the warehouse; they write ``artifacts/<asset>/<video_id>/<file>``
atomically. A table asset then rebuilds its DuckDB table from every video's file in one
``CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet(glob)``. So:

- re-running a partition replaces that video's rows on the next collect, never duplicates them;
- parallel partition runs cannot lose rows (they do not share a writer);
- the table write itself is one transaction under the warehouse writer lock.
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.io.layout import DataLayout
from align_core.io.warehouse import collect_parquet_table

__all__ = [
    "COLLECTED_TABLES",
    "CollectedTable",
    "collect_table_asset",
]


@dataclass(frozen=True)
class CollectedTable:
    """How one warehouse table is collected from per-video artifacts (the asset and a rebuild share it)."""

    table: str
    source_asset: str
    file_role: str
    order_by: str
    eligibility: tuple[str, str] | None = None

    def collect(self, layout: DataLayout, database: str | Path) -> tuple[int, int, pd.DataFrame | None]:
        """(rows, videos, preview) after rebuilding the table in ``database`` from ``layout``'s artifacts."""
        files = layout.artifact_files(self.source_asset, self.file_role)
        checked = layout.artifact_files(*self.eligibility) if self.eligibility else None
        return collect_parquet_table(database, self.table, files, self.order_by, checked)


#: Every collected table, by table name, registered as its asset is defined
#: (``align-warehouse rebuild`` restores each of them from the artifacts).
COLLECTED_TABLES: dict[str, CollectedTable] = {}


def collect_table_asset(
    *,
    name: str,
    source_asset: str,
    file_role: str,
    description: str,
    group_name: str,
    order_by: str,
    table: str | None = None,
    eligibility: tuple[str, str] | None = None,
):
    """Build an unpartitioned asset that collects one Parquet file per video into a table.

    ``file_role`` names the file in ``align_core.io.layout.ARTIFACT_FILES[source_asset]``.
    ``table`` names the DuckDB table when it must differ from the asset key (the per-video
    ``variant_quality`` asset feeds the ``variant_quality`` table, collected by
    ``variant_quality_table``). ``eligibility`` = (asset, file role): join each row's
    ``eligible`` / ``exclusion_reason`` from that asset's per-video verdicts.
    """
    table = table or name
    spec = CollectedTable(table, source_asset, file_role, order_by, eligibility)
    COLLECTED_TABLES[table] = spec

    @asset(
        name=name,
        deps=[AssetKey(source_asset)] + ([AssetKey(eligibility[0])] if eligibility else []),
        group_name=group_name,
        description=description,
        kinds={"duckdb"},
    )
    def _table(
        context: AssetExecutionContext, platform: PlatformResource, warehouse: DuckDBResource
    ) -> MaterializeResult:
        rows, videos, preview = spec.collect(platform.layout, warehouse.database)
        metadata = {
            "dagster/row_count": rows,
            "videos": videos,
            "table": MetadataValue.text(f"{warehouse.database}::{table}"),
            "query": MetadataValue.md(f"```sql\nSELECT * FROM {table} LIMIT 10;\n```"),
        }
        if preview is not None:
            metadata["preview"] = table_markdown(preview)
        return MaterializeResult(metadata=metadata)

    return _table
