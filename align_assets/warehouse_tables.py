"""Warehouse tables collected from per-video Parquet artifacts.

Per-video assets never write the warehouse; they write ``artifacts/<asset>/<video_id>/<file>``
atomically. A table asset then rebuilds its DuckDB table from every video's file in one
``CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet(glob)``. So:

- re-running a partition replaces that video's rows on the next collect, never duplicates them;
- parallel partition runs cannot lose rows (they do not share a writer);
- the table write itself is one transaction under the warehouse writer lock.
"""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

from align_assets.metadata import table_markdown
from align_assets.resources import PlatformResource
from align_core.io.warehouse import collect_parquet_table

__all__ = [
    "collect_table_asset",
]


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
        layout = platform.layout
        files = layout.artifact_files(source_asset, file_role)
        checked = layout.artifact_files(*eligibility) if eligibility else None
        rows, videos, preview = collect_parquet_table(warehouse.database, table, files, order_by, checked)
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
